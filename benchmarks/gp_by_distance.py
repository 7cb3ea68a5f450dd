"""Where on the GP cube is an estimate's error? (issue 3.) The hidden cells grouped by the number
of time steps to the nearest observation of the same cell, and in each group the estimate's MSE
divided by the exact posterior mean's there.

    python benchmarks/gp_by_distance.py CUBE_DIR EST.nc|EST.npy [...]

EST.nc: an `impute-cli impute` output (its tas_filled); EST.npy: a (T, H, W) array in K, e.g.
the perfect-network estimate of `gp_method_limit.py --save`."""
import sys, numpy as np, xarray as xr
W = sys.argv[1]
t = xr.open_dataset(W + '/truth.nc'); p = xr.open_dataset(W + '/posterior.nc')
y = t['tas'].values; M = t['observed'].values; pm = p['tas_mean'].values
h = ~M; T = y.shape[0]
dist = np.full(y.shape, 99); last = np.full(y.shape[1:], -99)
for i in range(T):
    last = np.where(M[i], i, last); dist[i] = np.minimum(dist[i], i - last)
nxt = np.full(y.shape[1:], 10**6)
for i in range(T - 1, -1, -1):
    nxt = np.where(M[i], i, nxt); dist[i] = np.minimum(dist[i], nxt - i)
ests = {}
for f in sys.argv[2:]:
    ests[f.split('/')[-1]] = np.load(f) if f.endswith('.npy') else xr.open_dataset(f)['tas_filled'].values
print('| steps to the nearest observation in time | cells | posterior-mean MSE (K²) | ' + ' | '.join(ests) + ' |')
for lo, hi in ((1, 1), (2, 2), (3, 4), (5, 7), (8, 99)):
    sel = h & (dist >= lo) & (dist <= hi)
    pmm = np.mean((pm - y)[sel] ** 2)
    print(f'| {lo}{"" if hi == lo else "–" + str(hi) if hi < 99 else "+"} | {sel.sum()} | {pmm:.3f} | ' + ' | '.join(f'{np.mean((e - y)[sel] ** 2) / pmm:.2f}' for e in ests.values()) + ' |')
sel = h
pmm = np.mean((pm - y)[sel] ** 2)
print(f'| all | {sel.sum()} | {pmm:.3f} | ' + ' | '.join(f'{np.mean((e - y)[sel] ** 2) / pmm:.2f}' for e in ests.values()) + ' |')
