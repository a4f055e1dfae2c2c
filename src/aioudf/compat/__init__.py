"""Scripts written for Kapacitor's own Python agent, served by aioudf.

``aioudf compat SCRIPT.py [ARGS...]`` runs such a script unchanged: its
``from kapacitor.udf.agent import Agent, Handler, Server`` and ``from
kapacitor.udf import udf_pb2`` get this package's modules (see
:mod:`aioudf.compat.modules`), and the connections its Agent and Server
serve run on aioudf's agent and server, with their guarantees: keepalives
answered while a handler method runs, hostile frames answered with an
ErrorResponse, a failing handler ending its connection only, SIGHUP
reloads and ``--workers`` for socket UDFs. A script may also import
``from aioudf.compat import Agent, Handler, Server, udf_pb2`` itself.

Modules:

``agent``      ``Agent``, ``Handler``, ``Server``: the official API (``kapacitor.udf.agent``)
``udf_pb2``    aioudf's generated messages under the agent's name (``kapacitor.udf.udf_pb2``)
``modules``    putting the two under Kapacitor's names in ``sys.modules``
``script``     running a script as ``__main__``: what ``aioudf compat`` does
``_link``      the adapter: one connection between aioudf's agent and the script's

See docs/compat.md.
"""

from . import udf_pb2
from ._runtime import Settings
from .agent import Agent, Handler, Server
from .modules import provide_kapacitor_modules
from .script import run_script

__all__ = [
    "Agent",
    "Handler",
    "Server",
    "Settings",
    "provide_kapacitor_modules",
    "run_script",
    "udf_pb2",
]
