"""The UDF protocol's messages: aioudf's own generated module, under the agent's name.

``aioudf.compat.udf_pb2`` (and, under ``aioudf compat``, ``kapacitor.udf.udf_pb2``)
is :mod:`aioudf._pb.udf_pb2` itself: ``udf_pb2.Response()``, ``udf_pb2.STREAM``,
``udf_pb2.STRING`` are the classes and values aioudf speaks with, so a message
a script builds is one aioudf sends as it is.
"""

import sys

from .._pb import udf_pb2 as _generated
from .._pb.udf_pb2 import *  # noqa: F403  (what type checkers and readers see)

sys.modules[__name__] = _generated
