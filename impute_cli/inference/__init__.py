"""inference: a model and a gappy cube in, the point estimate and samples out. `impute`
orchestrates; `loading` pairs a model with a file; `fill` resolves the job once and fills a
region (tile blending, member seeds); `ensemble` is the single-step point estimate, `solver`
the multi-step sampler; `engine` runs regions here or on a Dask cluster."""
