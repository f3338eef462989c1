"""Prints the Authorization headers botocore's S3 signer gives for the
requests in sigv4_test.cc's BotocoreAgrees cases; the expected values there
were computed with this script (botocore 1.44.5):

    .venv/bin/python src/stoker/storage/s3/botocore_vectors.py

It builds each request independently of stoker: the path is encoded with
urllib's quote(safe='/~') as botocore's serializer does, the query is given
as params for botocore to encode and sort itself.
"""

import datetime
from unittest import mock
from urllib.parse import quote

from botocore import auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

WHEN = datetime.datetime(2024, 1, 15, 12, 30, 45, tzinfo=datetime.timezone.utc)
KEY_ID = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "IQoJb3JpZ2luX2VjEXAMPLE/token+with=odd/chars"
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# The body of the complete_multipart_upload case, as stoker's
# CompleteMultipartUploadXml writes it for two parts.
COMPLETE = ('<?xml version="1.0" encoding="UTF-8"?>'
            '<CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            '<Part><PartNumber>1</PartNumber><ETag>&quot;etag-1&quot;</ETag></Part>'
            '<Part><PartNumber>2</PartNumber><ETag>&quot;etag-2&quot;</ETag></Part>'
            '</CompleteMultipartUpload>').encode()

CASES = [
    # name, method, origin, path (unencoded), params, extra headers, region, token[, body]
    ("path_style_get", "GET", "http://127.0.0.1:9000",
     "/my-bucket/train/cls a/img+1 (copy)~\u00fc.jpg", {}, {}, "us-east-1", None),
    ("range_with_token", "GET", "http://localhost:5000",
     "/data/shards/train-000001.tar", {}, {"Range": "bytes=1024-2047"}, "eu-west-1", TOKEN),
    ("virtual_hosted_list", "GET", "https://my-bucket.s3.eu-central-1.amazonaws.com", "/",
     {"list-type": "2", "encoding-type": "url", "prefix": "train/",
      "continuation-token": "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="},
     {}, "eu-central-1", None),
    ("head", "HEAD", "http://127.0.0.1:9000", "/b/k", {}, {}, "us-east-1", None),
    # Writes: botocore hashes the body itself (over http it always signs
    # the payload), independently of stoker's hash.
    ("put_object", "PUT", "http://127.0.0.1:9000", "/data/out/shard-000000.stoker", {}, {},
     "us-east-1", None, b"shard bytes\x00\x01\xff" * 100),
    ("upload_part_with_token", "PUT", "http://localhost:5000", "/data/out/index.stoker",
     {"partNumber": "2", "uploadId": "VXBsb2FkIElE+/="}, {}, "eu-west-1", TOKEN,
     b"part two " * 1000),
    ("create_multipart_upload", "POST", "http://127.0.0.1:9000", "/b/k", {"uploads": ""}, {},
     "us-east-1", None, b""),
    ("complete_multipart_upload", "POST", "http://127.0.0.1:9000", "/b/k",
     {"uploadId": "VXBsb2FkIElE+/="}, {}, "us-east-1", None, COMPLETE),
    ("delete", "DELETE", "http://127.0.0.1:9000", "/b/k", {"uploadId": "abc"}, {}, "us-east-1",
     None),
]


def sign(method, origin, path, params, extra, region, token, body=None):
    creds = Credentials(KEY_ID, SECRET, token)
    signer = auth.S3SigV4Auth(creds, "s3", region)
    headers = {"Host": origin.split("://", 1)[1]}
    headers.update(extra)
    headers["x-amz-content-sha256"] = EMPTY
    req = AWSRequest(method=method, url=origin + quote(path, safe="/~"), params=params,
                     headers=headers, data=body)
    with mock.patch.object(auth, "get_current_datetime", return_value=WHEN):
        signer.add_auth(req)
    return req.headers["Authorization"]


if __name__ == "__main__":
    for name, *args in CASES:
        print(f"{name}: {sign(*args)}")
