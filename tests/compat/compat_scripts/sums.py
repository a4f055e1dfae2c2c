# mypy: ignore-errors
# (Written as scripts for Kapacitor's agent are: untyped, importing kapacitor.udf.)
"""A socket UDF for Kapacitor's Python agent: the running sum of ``v`` per group.

    aioudf compat sums.py SOCKET            # snapshot()/restore() carry the sums
    aioudf compat sums.py SOCKET stateless  # no snapshot()/restore()

Every point goes back with fields ``sum`` (the group's sum so far) and
``pid`` (the process that handled it), so a test sees which process served
each point and whether the sums survived a reload.
"""

import json
import os
import sys

from kapacitor.udf import udf_pb2
from kapacitor.udf.agent import Agent, Handler, Server


class StatelessSums(Handler):
    def __init__(self, agent):
        self._agent = agent
        self._sums = {}

    def info(self):
        response = udf_pb2.Response()
        response.info.wants = udf_pb2.STREAM
        response.info.provides = udf_pb2.STREAM
        return response

    def init(self, init_req):
        response = udf_pb2.Response()
        response.init.success = True
        return response

    def point(self, point):
        total = self._sums.get(point.group, 0.0) + point.fieldsDouble["v"]
        self._sums[point.group] = total
        response = udf_pb2.Response()
        response.point.CopyFrom(point)
        response.point.fieldsDouble["sum"] = total
        response.point.fieldsDouble["pid"] = float(os.getpid())
        self._agent.write_response(response)


class Sums(StatelessSums):
    def snapshot(self):
        response = udf_pb2.Response()
        response.snapshot.snapshot = json.dumps(self._sums).encode()
        return response

    def restore(self, restore_req):
        response = udf_pb2.Response()
        try:
            self._sums = json.loads(restore_req.snapshot.decode() or "{}")
            response.restore.success = True
        except ValueError as exc:
            response.restore.success = False
            response.restore.error = str(exc)
        return response


class Accepter:
    def __init__(self, handler_class):
        self._handler_class = handler_class

    def accept(self, conn, addr):
        agent = Agent(conn, conn)
        agent.handler = self._handler_class(agent)
        agent.start()
        agent.wait()


if __name__ == "__main__":
    handler_class = StatelessSums if sys.argv[2:] == ["stateless"] else Sums
    Server(sys.argv[1], Accepter(handler_class)).serve()
