"""netcdf_header: the header of a classic NetCDF file (CDF-1, CDF-2, CDF-5) -> checked before
netCDF-C reads it.

netCDF-C can crash the whole process (a segmentation fault, not an error) on some corrupt
classic headers; a damaged download must be refused in one line instead. This walks the header
as the format specification lays it out (NetCDF Classic Format Specification,
docs.unidata.ucar.edu/nug/current/file_format_specifications.html):

    header   = magic numrecs dim_list gatt_list var_list
    dim      = name dim_length
    attr     = name nc_type nelems values (padded to 4 bytes)
    var      = name nelems [dimid ...] vatt_list nc_type vsize begin

and refuses anything that does not fit: an unknown tag or type, a count larger than the bytes
left, a name that is not UTF-8, a dimension id out of range, two record dimensions, a record
dimension that is not a variable's first, or a data offset past the end of the file."""

from __future__ import annotations

import struct
from pathlib import Path

from impute_cli.errors import ImputeError

ABSENT, NC_DIMENSION, NC_VARIABLE, NC_ATTRIBUTE = 0, 10, 11, 12
TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 4, 6: 8}  # byte char short int float double
CDF5_TYPE_SIZES = {**TYPE_SIZES, 7: 1, 8: 2, 9: 4, 10: 8, 11: 8}  # ubyte ushort uint int64 uint64
MAX_NAME = 256 * 4  # NC_MAX_NAME characters of UTF-8
MAX_HEADER_READ = 64 * 1024 * 1024


class _Corrupt(Exception):
    pass


class _Reader:
    def __init__(self, buf: bytes, version: int) -> None:
        self.buf, self.pos, self.version = buf, 4, version

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.buf):
            raise _Corrupt(f"the header runs past the end of the file at byte {self.pos}")
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out

    def u32(self) -> int:
        return struct.unpack(">I", self._take(4))[0]

    def u64(self) -> int:
        return struct.unpack(">Q", self._take(8))[0]

    def count(self) -> int:  # nelems, dim lengths, dimids, vsize: 8 bytes in CDF-5
        return self.u64() if self.version == 5 else self.u32()

    def offset(self) -> int:  # begin: 4 bytes in CDF-1, 8 in CDF-2 and CDF-5
        return self.u32() if self.version == 1 else self.u64()

    def bounded(self, n: int, each: int, what: str) -> int:
        """A count of items of at least `each` bytes: no more than the bytes left can hold."""
        if n * each > len(self.buf) - self.pos:
            raise _Corrupt(f"{what} count {n} does not fit in the file")
        return n

    def name(self) -> str:
        n = self.count()
        if n == 0 or n > MAX_NAME:
            raise _Corrupt(f"a name of {n} bytes at byte {self.pos}")
        raw = self._take(-(-n // 4) * 4)[:n]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Corrupt(f"a name that is not UTF-8 at byte {self.pos}") from None
        if "\x00" in text or "/" in text:
            raise _Corrupt(f"an invalid name at byte {self.pos}")
        return text

    def list_header(self, tag: int, what: str) -> int:
        t, n = self.u32(), self.count()
        if t == ABSENT and n == 0:
            return 0
        if t != tag:
            raise _Corrupt(f"expected the {what} list (tag {tag}) but found tag {t}")
        return n

    def attributes(self) -> None:
        sizes = CDF5_TYPE_SIZES if self.version == 5 else TYPE_SIZES
        for _ in range(self.bounded(self.list_header(NC_ATTRIBUTE, "attribute"), 12, "attribute")):
            self.name()
            typ = self.u32()
            if typ not in sizes:
                raise _Corrupt(f"an attribute of unknown type {typ}")
            n = self.count()
            self._take(-(-(n * sizes[typ]) // 4) * 4)


def check_classic_header(path: str | Path) -> None:
    """Refuse a classic NetCDF file whose header is inconsistent; other files pass untouched."""
    p = Path(path)
    with open(p, "rb") as f:
        buf = f.read(MAX_HEADER_READ)
    if buf[:3] != b"CDF":
        return
    size = p.stat().st_size
    try:
        if len(buf) < 4 or buf[3] not in (1, 2, 5):
            raise _Corrupt(f"unknown classic format version {buf[3] if len(buf) > 3 else '?'}")
        r = _Reader(buf, buf[3])
        r.count() if r.version == 5 else r.u32()  # numrecs (or STREAMING)
        ndims = r.bounded(r.list_header(NC_DIMENSION, "dimension"), 8, "dimension")
        lengths = []
        for _ in range(ndims):
            r.name()
            lengths.append(r.count())
        if lengths.count(0) > 1:
            raise _Corrupt("more than one record (unlimited) dimension")
        r.attributes()
        sizes = CDF5_TYPE_SIZES if r.version == 5 else TYPE_SIZES
        for _ in range(r.bounded(r.list_header(NC_VARIABLE, "variable"), 16, "variable")):
            r.name()
            dimids = [r.count() for _ in range(r.bounded(r.count(), 4, "dimension id"))]
            for k, d in enumerate(dimids):
                if d >= ndims:
                    raise _Corrupt(f"a variable on dimension id {d} of {ndims}")
                if lengths[d] == 0 and k != 0:
                    raise _Corrupt("the record dimension is not a variable's first dimension")
            r.attributes()
            if r.u32() not in sizes:
                raise _Corrupt("a variable of unknown type")
            r.count()  # vsize (may legitimately be wrong for huge variables; not used)
            begin = r.offset()
            if begin > size:  # the header is whole but the data are cut off
                raise ImputeError(f"'{path}' is truncated: a variable's data start at byte {begin} but the "
                                  f"file has {size} bytes; get a complete copy of the file")
    except _Corrupt as e:
        raise ImputeError(f"'{path}' is not a valid NetCDF file: its header is corrupt ({e}); "
                          "get a complete copy of the file") from None
