"""io: files in, files out. In: a NetCDF/Zarr path -> a lazy `Cube` (dataset, cube) and its one-pass
`Summary` / normalisation `Stats` (stats), after the header checks of a classic NetCDF file
(netcdf_header). Planning: cube sizes -> tiles and regions (tiling), no data read. Out: the
filled values and spread -> output variables written atomically, CF-style (writer)."""
