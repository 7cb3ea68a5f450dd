"""masks: observed cells in, masks out. A cube's observed cells -> observation masks, the pool of
real gap shapes and the strategy `auto` picks (observation); an observation mask -> the context
and query masks of training and imputation (context_query); -> the cells `evaluate` hides
(holdout)."""
