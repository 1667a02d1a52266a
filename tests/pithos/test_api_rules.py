"""The object store's request rules without a server: path parsing,
metadata normalisation and limits, sharing syntax, reply quoting, dates,
ranges and conditional requests (``snfd.pithos.requests.parse_target`` and
``snfd.pithos.headers``)."""

from __future__ import annotations

from twisted.trial import unittest
from twisted.web.http_headers import Headers

from snfd import errors
from snfd.pithos import headers as hdr
from snfd.pithos.model import Permissions
from snfd.pithos.requests import Target, parse_target


class FakeRequest:
    def __init__(self, **headers: str | bytes):
        self.requestHeaders = Headers()
        for name, value in headers.items():
            raw = value if isinstance(value, bytes) else value.encode("utf-8")
            self.requestHeaders.addRawHeader(name.replace("_", "-").encode(), raw)


def segs(path: str) -> list[bytes]:
    return path.encode("utf-8").split(b"/")


class PathTests(unittest.TestCase):
    def test_levels(self):
        """/v1, /v1/a, /v1/a/c and /v1/a/c/o name the four levels; a
        trailing slash after the account or container changes nothing."""
        self.assertEqual(parse_target(segs("v1")), Target())
        self.assertEqual(parse_target(segs("v1/")), Target())
        self.assertEqual(parse_target(segs("v1/a")), Target("a"))
        self.assertEqual(parse_target(segs("v1/a/")), Target("a"))
        self.assertEqual(parse_target(segs("v1/a/c")), Target("a", "c"))
        self.assertEqual(parse_target(segs("v1/a/c/")), Target("a", "c"))
        self.assertEqual(parse_target(segs("v1/a/c/o")), Target("a", "c", "o"))
        self.assertEqual(parse_target(segs("v1/a/c/o")).level, "object")

    def test_object_names_keep_slashes(self):
        """The object name is the rest of the path, slashes, trailing
        slash, empty segments and dot segments kept as they are."""
        self.assertEqual(parse_target(segs("v1/a/c/d/e/f.txt")).name, "d/e/f.txt")
        self.assertEqual(parse_target(segs("v1/a/c/dir/")).name, "dir/")
        self.assertEqual(parse_target(segs("v1/a/c//x")).name, "/x")
        self.assertEqual(parse_target(segs("v1/a/c/..")).name, "..")
        self.assertEqual(parse_target(segs("v1/a/c/.")).name, ".")
        self.assertEqual(parse_target(segs("v1/a/c/x/../y")).name, "x/../y")

    def test_percent_decoding(self):
        """Segments are percent-decoded as UTF-8; %2F in an object name is
        a slash like any other."""
        t = parse_target(segs("v1/acc/caf%C3%A9/a%2Fb%20c"))
        self.assertEqual(t, Target("acc", "café", "a/b c"))

    def test_bad_names(self):
        """Invalid UTF-8, NUL, empty names, '/' inside an account or
        container and over-long names are 400s."""
        for path in ("v1/a/c/%FF", "v1/a/c/x%00y", "v1//c", "v1/a//", "v1/a%2Fb/c",
                     "v1/a/c%2Fd/o", "v1/a/" + "c" * 257, "v1/a/c/" + "o" * 1025,
                     "v1/" + "a" * 257):
            with self.subTest(path=path):
                self.assertRaises(errors.BadRequest, parse_target, segs(path))

    def test_longest_names(self):
        """Names at the limits (256 for containers, 1024 characters for
        objects, counted in characters not bytes) are accepted."""
        t = parse_target(segs("v1/a/" + "é" * 256 + "/" + "ü" * 1024))
        self.assertEqual(len(t.container or ""), 256)
        self.assertEqual(len(t.name or ""), 1024)

    def test_not_v1(self):
        """Anything but /v1 below the mount is a 404."""
        self.assertRaises(errors.NotFound, parse_target, segs("v2/a"))
        self.assertRaises(errors.NotFound, parse_target, [])


class MetaTests(unittest.TestCase):
    def test_normalisation(self):
        """Keys lose underscores and get capitalised words."""
        self.assertEqual(hdr.normal_key("foo_bar-BAZ"), "Foo-Bar-Baz")
        request = FakeRequest(**{"X-Object-Meta-my_key": "v", "X-Object-Meta-Other": "w"})
        self.assertEqual(hdr.meta_headers(request, "Object"),
                         {"X-Object-Meta-My-Key": "v", "X-Object-Meta-Other": "w"})

    def test_absent_and_removed(self):
        """No metadata header gives None; X-Remove-*-Meta-* gives an empty
        value (a deletion)."""
        self.assertIsNone(hdr.meta_headers(FakeRequest(), "Container"))
        request = FakeRequest(**{"X-Remove-Container-Meta-Gone": "x"})
        self.assertEqual(hdr.meta_headers(request, "Container"),
                         {"X-Container-Meta-Gone": ""})

    def test_unicode_values(self):
        """Raw UTF-8 and percent-encoded values both arrive as text."""
        request = FakeRequest(**{"X-Object-Meta-A": "café".encode(),
                                 "X-Object-Meta-B": "caf%C3%A9"})
        self.assertEqual(hdr.meta_headers(request, "Object"),
                         {"X-Object-Meta-A": "café", "X-Object-Meta-B": "café"})

    def test_limits(self):
        """33 keys, a 129-byte key or a 257-byte value are 400s; the
        limits themselves pass."""
        ok = FakeRequest(**{f"X-Object-Meta-K{i}": "v" for i in range(32)})
        self.assertEqual(len(hdr.meta_headers(ok, "Object") or {}), 32)
        many = FakeRequest(**{f"X-Object-Meta-K{i}": "v" for i in range(33)})
        self.assertRaises(errors.BadRequest, hdr.meta_headers, many, "Object")
        self.assertEqual(len(hdr.meta_headers(
            FakeRequest(**{"X-Object-Meta-" + "k" * 128: "v" * 256}), "Object") or {}), 1)
        self.assertRaises(errors.BadRequest, hdr.meta_headers,
                          FakeRequest(**{"X-Object-Meta-" + "k" * 129: "v"}), "Object")
        self.assertRaises(errors.BadRequest, hdr.meta_headers,
                          FakeRequest(**{"X-Object-Meta-K": "é" * 129}), "Object")

    def test_bad_bytes(self):
        """A metadata value that is not UTF-8 is a 400; such bytes in an
        unrelated header do no harm."""
        request = FakeRequest(**{"X-Object-Meta-K": b"\xff\xfe"})
        self.assertRaises(errors.BadRequest, hdr.meta_headers, request, "Object")
        request = FakeRequest(**{"User-Agent": b"\xff", "X-Object-Meta-K": "v"})
        self.assertEqual(hdr.meta_headers(request, "Object"), {"X-Object-Meta-K": "v"})

    def test_groups(self):
        """Group headers give lowercase names and member tuples without
        spaces or duplicates; an empty value deletes."""
        request = FakeRequest(**{"X-Account-Group-Dev": "a, b,a", "X-Account-Group-Old": ""})
        self.assertEqual(hdr.group_headers(request), {"dev": ("a", "b"), "old": ()})
        self.assertIsNone(hdr.group_headers(FakeRequest()))
        many = FakeRequest(**{"X-Account-Group-G": ",".join(f"u{i}" for i in range(33))})
        self.assertRaises(errors.BadRequest, hdr.group_headers, many)


class SharingTests(unittest.TestCase):
    def test_parse(self):
        """read=/write= lists, spaces dropped, lowercased, '*' absorbing."""
        self.assertEqual(hdr.parse_sharing("read=A, b;write=c"),
                         Permissions(read=("a", "b"), write=("c",)))
        self.assertEqual(hdr.parse_sharing("write=x,*,y"), Permissions(write=("*",)))
        self.assertEqual(hdr.parse_sharing(""), Permissions())

    def test_bad_syntax(self):
        """Unknown parts or missing '=' are 400s."""
        for value in ("read", "delete=a", "read=a;bogus", "read=a=b"):
            with self.subTest(value=value):
                self.assertRaises(errors.BadRequest, hdr.parse_sharing, value)

    def test_format(self):
        """The reply form is read=...;write=..."""
        self.assertEqual(hdr.format_sharing(Permissions(("a", "b"), ("c",))),
                         "read=a,b;write=c")
        self.assertEqual(hdr.format_sharing(Permissions(write=("c",))), "write=c")

    def test_public(self):
        """X-Object-Public takes true, false or empty."""
        self.assertTrue(hdr.parse_public("True"))
        self.assertFalse(hdr.parse_public(""))
        self.assertFalse(hdr.parse_public("false"))
        self.assertRaises(errors.BadRequest, hdr.parse_public, "maybe")


class ReplyTests(unittest.TestCase):
    def test_quoting(self):
        """Non-ASCII values of the Pithos header families are URL-encoded,
        and percent signs in decoded values too; other values are not."""
        self.assertEqual(hdr.reply_value("X-Object-Meta-A", "café"), b"caf%C3%A9")
        self.assertEqual(hdr.reply_value("X-Object-Meta-A", "50%"), b"50%25")
        self.assertEqual(hdr.reply_value("X-Object-Meta-A", "a b/c=d"), b"a b/c=d")
        self.assertEqual(hdr.reply_value("Content-Type", "text/plain; charset=utf-8"),
                         b"text/plain; charset=utf-8")
        self.assertEqual(hdr.reply_value("Content-Disposition", "a; filename*=x%41"),
                         b"a; filename*=x%41")
        self.assertEqual(hdr.reply_value("ETag", '"abc"'), b'"abc"')
        self.assertEqual(hdr.reply_name("X-Object-Meta-Café"), b"X-Object-Meta-Caf%C3%A9")

    def test_dates(self):
        """RFC 1123 in headers (rounded up to the second, as Swift), ISO
        8601 in listings, six decimals for Pithos timestamps, and HTTP
        dates parse back (bad ones: None)."""
        self.assertEqual(hdr.http_date(784887151.5), "Tue, 15 Nov 1994 08:12:32 GMT")
        self.assertEqual(hdr.http_date(784887151), "Tue, 15 Nov 1994 08:12:31 GMT")
        self.assertEqual(hdr.iso_date(784887151.25), "1994-11-15T08:12:31.250000")
        self.assertEqual(hdr.timestamp(1.5), "1.500000")
        self.assertEqual(hdr.parse_http_date("Tue, 15 Nov 1994 08:12:31 GMT"), 784887151)
        self.assertIsNone(hdr.parse_http_date("yesterday"))
        self.assertIsNone(hdr.parse_http_date(""))

    def test_disposition(self):
        """disposition-type names the base name, RFC 6266 style."""
        self.assertEqual(hdr.content_disposition("inline", "a/b.txt"),
                         'inline; filename="b.txt"')
        self.assertEqual(hdr.content_disposition("attachment", "d/café"),
                         "attachment; filename*=UTF-8''caf%C3%A9")

    def test_object_paths(self):
        """X-Copy-From style paths split into container and object."""
        self.assertEqual(hdr.split_object_path("/c/a/b", "X"), ("c", "a/b"))
        self.assertEqual(hdr.split_object_path("c/caf%C3%A9", "X"), ("c", "café"))
        self.assertRaises(errors.BadRequest, hdr.split_object_path, "/c", "X")
        self.assertRaises(errors.BadRequest, hdr.split_object_path, "/c/", "X")


class RangeTests(unittest.TestCase):
    def test_forms(self):
        """first-last, first-, -suffix, several, clipped to the size."""
        self.assertEqual(hdr.parse_ranges("bytes=0-9", 100), [(0, 10)])
        self.assertEqual(hdr.parse_ranges("bytes=90-", 100), [(90, 100)])
        self.assertEqual(hdr.parse_ranges("bytes=-10", 100), [(90, 100)])
        self.assertEqual(hdr.parse_ranges("bytes=-500", 100), [(0, 100)])
        self.assertEqual(hdr.parse_ranges("bytes=95-200", 100), [(95, 100)])
        self.assertEqual(hdr.parse_ranges("bytes=0-0, 5-6 ,-1", 100),
                         [(0, 1), (5, 7), (99, 100)])

    def test_ignored(self):
        """No header, another unit, bad syntax and reversed ranges mean
        the whole object."""
        for value in (None, "items=0-1", "bytes=a-b", "bytes=5", "bytes=9-3", "bytes=",
                      "bytes=-", "bytes=1-2;3-4"):
            with self.subTest(value=value):
                self.assertIsNone(hdr.parse_ranges(value, 100))

    def test_unsatisfiable(self):
        """Ranges all past the end (or empty objects) are a 416 naming
        the size; unsatisfiable ones among good ones are dropped."""
        for value, size in (("bytes=100-", 100), ("bytes=-0", 100), ("bytes=0-", 0)):
            with self.subTest(value=value):
                e = self.assertRaises(errors.RangeNotSatisfiable, hdr.parse_ranges,
                                      value, size)
                self.assertEqual(e.headers["Content-Range"], f"bytes */{size}")
        self.assertEqual(hdr.parse_ranges("bytes=200-300,0-1", 100), [(0, 2)])

    def test_egregious(self):
        """As Swift answers them, more than 50 ranges, more than two
        overlapping pairs (identical ranges included) and eight or more
        ranges out of order are a 416 naming the size."""
        for value in ("bytes=" + ",".join(f"{i}-{i}" for i in range(51)),
                      "bytes=" + ",".join(["0-"] * 100),
                      "bytes=0-,0-,0-",
                      "bytes=0-9,5-14,8-20,1-2",
                      "bytes=" + ",".join(f"{i}-{i}" for i in range(80, 0, -10))):
            with self.subTest(value=value):
                e = self.assertRaises(errors.RangeNotSatisfiable, hdr.parse_ranges,
                                      value, 100)
                self.assertEqual(e.headers["Content-Range"], "bytes */100")
        self.assertEqual(len(hdr.parse_ranges(
            "bytes=" + ",".join(f"{2 * i}-{2 * i}" for i in range(50)), 100) or []), 50)
        self.assertEqual(hdr.parse_ranges(
            "bytes=" + ",".join(f"{i}-{i}" for i in range(70, 0, -10)), 100),
            [(i, i + 1) for i in range(70, 0, -10)])

    def test_coalesced(self):
        """Ranges that overlap or touch are sent once, merged, in
        ascending order; ranges apart keep the order given."""
        self.assertEqual(hdr.parse_ranges("bytes=0-,0-", 100), [(0, 100)])
        self.assertEqual(hdr.parse_ranges("bytes=0-9,5-14", 100), [(0, 15)])
        self.assertEqual(hdr.parse_ranges("bytes=10-19,0-9", 100), [(0, 20)])
        self.assertEqual(hdr.parse_ranges("bytes=50-59,0-9,5-7", 100),
                         [(0, 10), (50, 60)])
        self.assertEqual(hdr.parse_ranges("bytes=50-59,0-9", 100), [(50, 60), (0, 10)])


class ConditionTests(unittest.TestCase):
    mtime = 784887151.5
    date = "Tue, 15 Nov 1994 08:12:32 GMT"  # Last-Modified: rounded up, as Swift
    before = "Tue, 15 Nov 1994 08:12:31 GMT"

    def check(self, reading=True, etag="abc", mtime=mtime, **headers):
        hdr.check_preconditions(FakeRequest(**headers), etag, mtime, reading)

    def test_if_match(self):
        """If-Match passes on the ETag (quoted or not) or '*', else 412;
        '*' fails on a missing object."""
        self.check(If_Match='"abc"')
        self.check(If_Match="x, abc")
        self.check(If_Match="*")
        self.assertRaises(errors.PreconditionFailed, self.check, If_Match="xyz")
        self.assertRaises(errors.PreconditionFailed, self.check, If_Match="*", etag=None,
                          mtime=None)

    def test_if_none_match(self):
        """A matching If-None-Match is a 304 for reads (with the ETag),
        a 412 for writes."""
        e = self.assertRaises(errors.NotModified, self.check, If_None_Match="abc")
        self.assertEqual(e.headers["ETag"], "abc")
        self.assertRaises(errors.PreconditionFailed, self.check, reading=False,
                          If_None_Match="*")
        self.check(If_None_Match="other")
        self.check(If_None_Match="*", etag=None, mtime=None, reading=False)

    def test_dates(self):
        """If-Modified-Since at or after the mtime (rounded up) is a 304;
        If-Unmodified-Since before it a 412; unreadable dates are ignored;
        as in swob, each is checked even beside a failed If-None-Match."""
        self.assertRaises(errors.NotModified, self.check, If_Modified_Since=self.date)
        self.check(If_Modified_Since=self.before)
        self.check(If_Modified_Since="garbage")
        self.assertRaises(errors.NotModified, self.check, If_Modified_Since=self.date,
                          If_None_Match="other")
        self.assertRaises(errors.PreconditionFailed, self.check,
                          If_Unmodified_Since=self.before)
        self.check(If_Unmodified_Since=self.date)

    def test_if_range(self):
        """If-Range holds for the current ETag or exact date only."""
        def holds(value):
            return hdr.if_range_holds(FakeRequest(If_Range=value), "abc", self.mtime)
        self.assertTrue(hdr.if_range_holds(FakeRequest(), "abc", self.mtime))
        self.assertTrue(holds("abc"))
        self.assertTrue(holds('"abc"'))
        self.assertFalse(holds('W/"abc"'))
        self.assertFalse(holds("def"))
        self.assertTrue(holds(self.date))
        self.assertFalse(holds(self.before))

    def test_formats(self):
        """format beats Accept; Accept picks json/xml; default text."""
        self.assertEqual(hdr.listing_format("json", "application/xml"), "json")
        self.assertEqual(hdr.listing_format(None, "application/json"), "json")
        self.assertEqual(hdr.listing_format(None, "text/xml"), "xml")
        self.assertEqual(hdr.listing_format(None, "*/*"), "text")
        self.assertEqual(hdr.listing_format(None, None, "json"), "json")
        self.assertEqual(hdr.listing_format("plain", "application/json"), "text")
