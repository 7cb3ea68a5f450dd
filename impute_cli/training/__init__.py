"""training: a cube in, a model folder out ([CQ] Algorithm 1 on the observed cells only): the
loop (train), the loss pieces (loss), several processes under torchrun (distributed)."""
