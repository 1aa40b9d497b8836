"""The job runtime: supervised actors in one nursery, talking over memory channels.

Layers: ``http/`` feeds this package; it drives ``stores/``, which drives ``redis/``.
"""

from ._runtime import OUTCOME_FLUSH as OUTCOME_FLUSH
from ._runtime import Runtime as Runtime
