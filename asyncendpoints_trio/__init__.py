"""asyncendpoints-trio: asynchronous request-reply HTTP APIs on Trio.

Everything public is named here; the modules behind it are private.
"""

from ._cli import run as run
from ._config import SENSITIVE_HEADER_PATTERNS as SENSITIVE_HEADER_PATTERNS
from ._config import SENSITIVE_HEADERS as SENSITIVE_HEADERS
from ._config import EndpointsConfig as EndpointsConfig
from ._context import AsyncContext as AsyncContext
from ._context import Headers as Headers
from ._errors import AsyncEndpointsError as AsyncEndpointsError
from ._errors import ConfigurationError as ConfigurationError
from ._errors import IdempotencyConflict as IdempotencyConflict
from ._errors import InvalidTransition as InvalidTransition
from ._errors import JobTimeout as JobTimeout
from ._errors import NonRetryableError as NonRetryableError
from ._errors import NotAccepting as NotAccepting
from ._errors import PoolTimeout as PoolTimeout
from ._errors import QueueFull as QueueFull
from ._errors import RedisConnectionError as RedisConnectionError
from ._errors import RedisReplyError as RedisReplyError
from ._errors import RedisTimeoutError as RedisTimeoutError
from ._errors import StoreError as StoreError
from ._errors import StoreUnavailable as StoreUnavailable
from ._handlers import HandlerRegistry as HandlerRegistry
from ._job import MAX_PRIORITY as MAX_PRIORITY
from ._job import MIN_PRIORITY as MIN_PRIORITY
from ._job import TERMINAL as TERMINAL
from ._job import TRANSITIONS as TRANSITIONS
from ._job import Attempt as Attempt
from ._job import HttpContext as HttpContext
from ._job import Job as Job
from ._job import JobStatus as JobStatus
from ._job_json import job_to_json as job_to_json
from ._result import MethodResult as MethodResult
from ._retry import RetryPolicy as RetryPolicy
from .http._access import Access as Access
from .http._endpoints import AsyncEndpoints as AsyncEndpoints
from .http._problems import Problem as Problem
from .http._submit import SubmitContext as SubmitContext
from .runtime import Runtime as Runtime
from .runtime._statistics import RuntimeStatistics as RuntimeStatistics
from .stores._memory import MemoryStore as MemoryStore
from .stores._protocol import JobStore as JobStore
from .stores._protocol import NewJob as NewJob
from .stores._protocol import Submitted as Submitted
from .stores._redis import RedisStore as RedisStore
from .telemetry._otel import otel_instruments as otel_instruments

__version__ = "0.1.0"
