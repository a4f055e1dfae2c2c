"""Returns every point it receives: a stream-to-stream socket UDF.

The aioudf version of Kapacitor's ``mirror`` example, served on a unix
socket::

    python examples/mirror.py --socket /tmp/mirror.sock

Kapacitor configuration (socket UDF)::

    [udf.functions.mirror]
        socket = "/tmp/mirror.sock"
        timeout = "10s"

TICKscript::

    stream
        |from()
            .measurement('cpu')
        @mirror()
            .field('mirrored', 1.0)

Every point comes back unchanged, except that each ``.field(name, value)``
(optional, may be repeated) sets that double field on it. Many tasks may use
the socket at once: every connection gets its own handler.
"""

from __future__ import annotations

import aioudf
from aioudf import Handler, Option, Point


class Mirror(Handler):
    """Returns every point unchanged, or with .field(name, value) fields set."""

    fields = Option(str, float, name="field", repeated=True, help="set a double field")

    async def point(self, point: Point) -> None:
        for name, value in self.fields:
            # A field has one type: drop a same-named field of another type.
            for other in (point.fieldsInt, point.fieldsString, point.fieldsBool):
                if name in other:
                    del other[name]
            point.fieldsDouble[name] = value
        await self.emit(point)


if __name__ == "__main__":
    aioudf.main(Mirror)
