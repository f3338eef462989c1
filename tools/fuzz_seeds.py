#!/usr/bin/env python3
"""Writes the seed corpora for the libFuzzer targets (make fuzz).

    fuzz_seeds.py OUT_DIR

creates OUT_DIR/{decode,manifest,uri,xml,http_reply,fields,shard_index,tar,cache_entry}/ with a few small valid
inputs per target, so the fuzzers start from the formats' real structure instead of
finding it byte by byte. Images are generated with Pillow (kept tiny: a
fuzzer mutates faster on short inputs); the text formats are written
inline. Decode seeds carry decode_fuzz.cc's 4 control bytes in front.
Shard indexes are packed with struct as docs/shard-format.md lays them out;
tars are written by Python's tarfile (ustar, GNU and pax), as WebDataset's are.
"""
import io
import pathlib
import struct
import sys

from PIL import Image



def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as docs/shard-format.md's checksums."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def images():
    """(name, bytes) of tiny JPEGs and PNGs covering the decoder's branches."""
    rgb = Image.new("RGB", (24, 16))
    for y in range(16):
        for x in range(24):
            rgb.putpixel((x, y), (x * 10, y * 15, (x * y) % 256))
    out = []

    def save(name, img, fmt, **kw):
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        out.append((name, buf.getvalue()))

    save("jpeg-420.jpg", rgb, "JPEG", quality=50, subsampling=2)
    save("jpeg-422.jpg", rgb, "JPEG", quality=50, subsampling=1)
    save("jpeg-444.jpg", rgb, "JPEG", quality=50, subsampling=0)
    save("jpeg-progressive.jpg", rgb, "JPEG", quality=50, progressive=True)
    save("jpeg-gray.jpg", rgb.convert("L"), "JPEG", quality=50)
    save("jpeg-cmyk.jpg", rgb.convert("CMYK"), "JPEG", quality=50)
    save("jpeg-restart.jpg", rgb.resize((40, 40)), "JPEG", quality=50)
    save("png-rgb.png", rgb, "PNG")
    save("png-rgba.png", rgb.convert("RGBA"), "PNG")
    save("png-gray.png", rgb.convert("L"), "PNG")
    save("png-gray16.png", rgb.convert("I;16"), "PNG")
    save("png-palette.png", rgb.convert("P"), "PNG")
    save("png-1bit.png", rgb.convert("1"), "PNG")
    save("png-interlaced.png", rgb, "PNG", interlace=1)
    return out


MANIFESTS = {
    "plain.csv": b"path,label\na/1.jpg,0\nb/2.jpg,1\n",
    "quoted.csv": b'\xef\xbb\xbf label , path\r\n3,"x,""y"".jpg"\r\n\r\n4,"multi\nline.png"\r\n',
    "absolute.csv": b"path,label,extra\n/abs/a.jpg,7,z\ns3://b/k.jpg,8,\nfile:///c.png,9,q\n",
    "plain.jsonl": b'{"path": "a/1.jpg", "label": 0}\n{"label": 1, "path": "b/2.jpg"}\n',
    "escapes.jsonl": b'{"path": "caf\\u00e9\\ud83d\\ude00\\n\\"q\\".jpg", "label": 3, '
                     b'"meta": {"k": [1, "x", {"y": null}]}, "w": 1.5e3, "t": true}\n\n',
    "mixed.jsonl": b'  {"path":"s3://b/k.png","label":12}  \r\n{"path": "/x.jpg", "label": 0}',
}

# endpoint URL, newline, dataset URI (see uri_fuzz.cc).
URIS = {
    "moto": b"http://127.0.0.1:9000\ns3://bucket/train/",
    "aws": b"\ns3://my-bucket/imagenet/train/n01440764/x.JPEG",
    "ipv6": b"https://[::1]:8443/base/\ns3://Bucket_1/a b/%41+c",
    "dotted": b"https://S3.EU-WEST-1.amazonaws.com\ns3://a.b.c/key",
    "file": b"\nfile:///data/manifest.csv",
    "plain": b"\n/data/imagenet/train",
    "http": b"http://host\nhttps://example.com/a/b.jpg?x=1",
    "unknown": b"\ngs://bucket/object",
}

XMLS = {
    "list.xml": b"""<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>bucket</Name><Prefix>train/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>
  <EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents><Key>train/a%2Bb+c.jpg</Key><LastModified>2024-01-01T00:00:00.000Z</LastModified>
    <ETag>&quot;abc&quot;</ETag><Size>1234</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>train/dir/</Key><Size>0</Size></Contents>
</ListBucketResult>""",
    "list-plain.xml": b"<ListBucketResult><IsTruncated>false</IsTruncated><Contents>"
                      b"<Key><![CDATA[x&y]]> &#233;&#x1F600;&lt;&gt;&amp;&apos;</Key><Size>0</Size>"
                      b"</Contents><CommonPrefixes><Prefix>p/</Prefix></CommonPrefixes>"
                      b"<!-- comment --></ListBucketResult>",
    "error.xml": b"""<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>PermanentRedirect</Code><Message>The bucket is elsewhere</Message>
<Endpoint>bucket.s3.eu-west-1.amazonaws.com</Endpoint><Region>eu-west-1</Region>
<RequestId>4442587FB7D0A2F9</RequestId></Error>""",
    "attrs.xml": b"<a:Error xmlns:a='x' b=\"1>2\"><a:Code>SlowDown</a:Code><Message/></a:Error>",
    "initiate.xml": b"""<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Bucket>bucket</Bucket><Key>out/shard-000000.stoker</Key>
<UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
</InitiateMultipartUploadResult>""",
}

# First byte: bit 0 = HEAD, the rest seeds the piece sizes (http_reply_fuzz.cc).
HTTP_REPLIES = {
    "length": b"\x10HTTP/1.1 200 OK\r\nContent-Length: 11\r\nETag: \"e\"\r\n\r\nhello world",
    "chunked": b"\x22HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n"
               b"6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n",
    "close": b"\x04HTTP/1.0 200 OK\r\n\r\nuntil the end",
    "continue": b"\x08HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Slow Down\r\nContent-Length: 5\r\n"
                b"Connection: close\r\n\r\nslow!",
    "head": b"\x01HTTP/1.1 200 OK\r\nContent-Length: 117000\r\n\r\n",
    "extra": b"\x30HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n",
}


def _npy(descr, shape, data, version=1):
    header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * ((64 - (len(header) + 11) % 64) % 64) + "\n"
    size = len(header).to_bytes(2 if version == 1 else 4, "little")
    return b"\x93NUMPY" + bytes([version, 0]) + size + header.encode() + data


# .npy files and JSON texts (fields_fuzz.cc runs every input through both).
FIELDS = {
    "f4-2x2.npy": _npy("<f4", "(2, 2)", bytes(range(16))),
    "u1-3.npy": _npy("|u1", "(3,)", b"abc"),
    "i8-scalar.npy": _npy("<i8", "()", b"\x01" * 8),
    "big-endian.npy": _npy(">i2", "(2,)", b"\x00\x01\x00\x02", version=2),
    "bool-empty.npy": _npy("|b1", "(0, 3)", b""),
    "doc.json": b'{"caption": "a cat \\u00e9", "boxes": [[1, 2.5e3, -0.5, null]], "ok": true}',
    "scalar.json": b"  -12.5E+2 ",
    "text.txt": "caf\u00e9 \u4e2d\U0001f600".encode(),
}


MISSING = 0xFFFFFFFF


def _shard_index(classes, fields, shards, entries, entry_extra=b""):
    """An index object (docs/shard-format.md). fields: [(kind, name)];
    shards: [(size, samples)]; entries: [(offset, source, label, shard,
    image_length, scan_offset, width, height, image_format, record crc,
    [field lengths])]; entry_extra: bytes a later minor version appends to
    each entry."""
    s = lambda text: struct.pack("<I", len(text.encode())) + text.encode()
    meta = b"".join(s(c) for c in classes)
    meta += b"".join(struct.pack("<B", kind) + s(name) for kind, name in fields)
    entry_size = 56 + 4 * len(fields) + len(entry_extra)
    out = b"STKINDEX" + struct.pack("<IIQIIIIQI", 1, 64, len(entries), len(shards), len(fields),
                                    entry_size, len(classes), len(meta), 0) + bytes(12)
    out += b"".join(struct.pack("<QII", size, n, 0) for size, n in shards)
    out += meta
    for off, src, label, shard, image, scan, w, h, fmt, crc, lens in entries:
        length = image + sum(n for n in lens if n != MISSING)
        out += struct.pack("<QQqIIIIIIII", off, src, label, shard, length, image, scan, w, h, fmt, crc)
        out += b"".join(struct.pack("<I", n) for n in lens) + entry_extra
    return out + struct.pack("<II", crc32c(out), 0) + b"STKINDEX"


def shard_indexes():
    """name -> index object: one control byte (bit 0: shard_index_fuzz.cc
    rewrites the trailer's CRC) then the index."""
    example = _shard_index(  # the example of docs/shard-format.md
        ["cat"], [(3, "txt")], [(27, 2)],
        [(16, 1, 0, 0, 5, 0, 0, 0, 4, crc32c(b"hellohi"), [2]),
         (23, 0, -1, 0, 4, 0, 2, 3, 3, crc32c(b"\x89PNG"), [MISSING])])
    # Three shards, the middle one empty; every image format; fields
    # present, empty and missing; a gap and a zero-length record.
    many = _shard_index(
        ["n01440764", "n01443537", "caf\u00e9"], [(7, "seg.png"), (6, "box.npy"), (1, "cls")],
        [(16 + 1000 + 30 + 300 + 8, 3), (16, 0), (16 + 5 + 16 + 40, 3)],
        [(16, 7, 2, 0, 1000, 620, 64, 48, 1, 1, [30, MISSING, MISSING]),
         (1046, 3, 0, 0, 300, 0, 0, 0, 2, 2, [MISSING, MISSING, 0]),
         (1346, 9, 1, 0, 0, 0, 0, 0, 0, 3, [MISSING, 8, MISSING]),
         (16, 1, 1, 2, 0, 0, 0, 0, 0, 0, [MISSING, MISSING, MISSING]),
         (21, 0, 2, 2, 12, 0, 3, 3, 3, 4, [MISSING, MISSING, 4]),
         (37, 2, 5, 2, 40, 0, 0, 0, 4, 5, [MISSING, MISSING, MISSING])])
    wide = _shard_index(  # entries with 8 bytes from a later minor version
        [], [(5, "bin")], [(16 + 9, 2)],
        [(16, 0, 7, 0, 4, 0, 1, 1, 2, 6, [1]), (21, 1, 8, 0, 4, 0, 1, 1, 2, 7, [MISSING])],
        entry_extra=b"LATERVER")
    empty = _shard_index([], [], [], [])
    return {"example-fixcrc": b"\x01" + example, "example": b"\x00" + example,
            "many-fixcrc": b"\x01" + many, "wide-fixcrc": b"\x03" + wide,
            "empty": b"\x00" + empty, "empty-shard-fixcrc": b"\x01" + _shard_index(
                ["a", "b"], [(2, "f")], [(16, 0)], [])}


def _tar(fmt, members) -> bytes:
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tars():
    """name -> tar_fuzz.cc input: a control byte (bit 0: fix header
    checksums; bit 1: expand the bytes as a brace pattern), then a tar."""
    import tarfile
    small = [("s0.jpg", b"\xff\xd8\xff\xd9"), ("s0.cls", b"1"), ("s0.txt", b"hi"),
             ("s1.png", b"\x89PNG"), ("s1.cls", b"2"), ("__meta__", b"m")]
    long = [("d/" + "n" * 120 + ".jpg", b"x" * 600), ("d/" + "n" * 120 + ".json", b"{}")]
    return {"ustar-fix": b"\x01" + _tar(tarfile.USTAR_FORMAT, small),
            "gnu": b"\x00" + _tar(tarfile.GNU_FORMAT, small + long),
            "pax-fix": b"\x01" + _tar(tarfile.PAX_FORMAT, long),
            "braces": b"\x02s3://b/train-{000..012}-{a,b{c,d}}.tar",
            "dup-fix": b"\x01" + _tar(tarfile.USTAR_FORMAT, [("a.jpg", b"1"), ("b.jpg", b"2"),
                                                             ("a.cls", b"3")])}


def _cache_entry(key: bytes, data: bytes) -> bytes:
    """An entry file as docs/cache-format.md lays it out."""
    head = b"STKCACHE" + struct.pack("<IIQ", 1, len(key), len(data))
    head += struct.pack("<I", crc32c(key + data))
    head += struct.pack("<I", crc32c(head))
    return head + key + data


def cache_entries():
    """name -> cache_entry_fuzz.cc input: a control byte (bit 0: fix the
    checksums), then an entry file."""
    page = _cache_entry(b"s3://b/shard-000001.stoker 0-4096", bytes(range(256)) * 4)
    return {"whole": b"\x00" + _cache_entry(b"s3://b/k.jpg", b"\xff\xd8 sample \xff\xd9"),
            "page-fix": b"\x01" + page, "empty-data": b"\x00" + _cache_entry(b"k", b""),
            "empty-key-fix": b"\x01" + _cache_entry(b"", b"data")}


def main():
    out = pathlib.Path(sys.argv[1])
    corpora = {
        "decode": {},
        "manifest": MANIFESTS,
        "uri": URIS,
        "xml": XMLS,
        "http_reply": HTTP_REPLIES,
        "fields": FIELDS,
        "shard_index": shard_indexes(),
        "tar": tars(),
        "cache_entry": cache_entries(),
    }
    # Decode seeds: a few control-byte prefixes per image (full/val, train,
    # fast, normalize; see decode_fuzz.cc).
    for name, data in images():
        for i, ctrl in enumerate((b"\x00\x00\x00\xff", b"\x0b\x40\x80\x40", b"\x1e\xff\x10\x20")):
            corpora["decode"][f"{i}-{name}"] = ctrl + data
    for target, files in corpora.items():
        d = out / target
        d.mkdir(parents=True, exist_ok=True)
        for name, data in files.items():
            (d / name).write_bytes(data)
    print(f"seeds in {out}: " + ", ".join(f"{t} {len(f)}" for t, f in corpora.items()))


if __name__ == "__main__":
    main()
