"""model: tiles in, x0 estimates out. Tiles of a cube -> normalised tensors (batches) under the
symmetries of the field (symmetry); the denoiser (noise scaling, network input) around a
backbone (backbones: unet, dit; shared blocks in layers)."""
