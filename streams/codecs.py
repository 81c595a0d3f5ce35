"""The codecs the worker's topics and table name, registered with faust when the app is
built: ``smi`` (orjson, ``schemas.codec.dumps``; decodes JSON into plain Python values) for
outputs and table values, ``text`` (UTF-8) for keys."""

from __future__ import annotations

from typing import Any

import orjson
from faust.serializers import codecs

from schemas.codec import dumps


class SmiCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return dumps(obj)

    def _loads(self, s: bytes) -> Any:
        return orjson.loads(s)


class TextCodec(codecs.Codec):
    def _dumps(self, obj: Any) -> bytes:
        return obj.encode() if isinstance(obj, str) else bytes(obj)

    def _loads(self, s: bytes) -> Any:
        return s.decode()


def register() -> None:
    codecs.register("smi", SmiCodec())
    codecs.register("text", TextCodec())
