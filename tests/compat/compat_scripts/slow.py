# mypy: ignore-errors
# (Written as scripts for Kapacitor's agent are: untyped, importing kapacitor.udf.)
"""A process UDF for Kapacitor's Python agent whose point() takes DELAY seconds.

    python -u slow.py DELAY        # on Kapacitor's own agent
    aioudf compat slow.py DELAY    # on aioudf

Each point goes back with a field ``slow`` = 1.0 once the delay has passed.
"""

import sys
import time

from kapacitor.udf import udf_pb2
from kapacitor.udf.agent import Agent, Handler


class SlowHandler(Handler):
    def __init__(self, agent, delay):
        self._agent = agent
        self._delay = delay

    def info(self):
        response = udf_pb2.Response()
        response.info.wants = udf_pb2.STREAM
        response.info.provides = udf_pb2.STREAM
        return response

    def init(self, init_req):
        response = udf_pb2.Response()
        response.init.success = True
        return response

    def snapshot(self):
        response = udf_pb2.Response()
        response.snapshot.snapshot = b""
        return response

    def point(self, point):
        time.sleep(self._delay)  # a slow model, a remote lookup...
        response = udf_pb2.Response()
        response.point.CopyFrom(point)
        response.point.fieldsDouble["slow"] = 1.0
        self._agent.write_response(response, True)


if __name__ == "__main__":
    agent = Agent()
    agent.handler = SlowHandler(agent, float(sys.argv[1]))
    agent.start()
    agent.wait()
