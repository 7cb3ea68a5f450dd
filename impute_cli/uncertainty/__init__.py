"""uncertainty: samples in, confidence intervals and joint regions out, with their coverage
(regions), split-conformal calibration factors (calibration), and the `confidence` command
that writes them (confidence)."""
