"""A Python client for asynchronous request-reply APIs: submit a job, wait for it (an event
stream where the service offers one, long-polls otherwise), read its result or its error.

``AsyncClient`` for async code (Trio or asyncio), ``Client`` for synchronous code; both on
httpx. See docs/pages/client.md.
"""

from ._async import AsyncClient as AsyncClient
from ._async import AsyncJobHandle as AsyncJobHandle
from ._core import JobEvent as JobEvent
from ._core import Retry as Retry
from ._errors import ClientError as ClientError
from ._errors import ClientProblemError as ClientProblemError
from ._errors import JobCanceled as JobCanceled
from ._errors import JobError as JobError
from ._errors import JobFailed as JobFailed
from ._errors import ProblemError as ProblemError
from ._errors import ServerProblemError as ServerProblemError
from ._errors import UnexpectedResponse as UnexpectedResponse
from ._errors import WaitTimeout as WaitTimeout
from ._sse import ServerSentEvent as ServerSentEvent
from ._sse import SSEDecoder as SSEDecoder
from ._sync import Client as Client
from ._sync import JobHandle as JobHandle
