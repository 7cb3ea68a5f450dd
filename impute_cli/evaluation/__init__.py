"""evaluation: a file in, scores out. Observed cells are hidden (masks.holdout), filled by the
model and by classical baselines (baselines: fill_steps, dineof, kriging), scored on the hidden
cells (scores) and reported (report); gp is a Gaussian process with an exact posterior, the
limit a method can reach on it."""
