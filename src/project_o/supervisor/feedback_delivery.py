"""Running the agent's feedback hooks on the main: at most once, with the reason if not.

::

    deliver(feedback) ──► wait for the main ──► main.feedback(...) ──► hook reports
                                                                    └─► None, or why not

At most once: if the main dies meanwhile the feedback is not sent again (it
may be what killed it). It waits behind the requests the main is serving,
for at most a request's deadline.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from project_o.errors import NoInstanceAvailable, RequestTimeout
from project_o.supervisor.events import EventLog
from project_o.supervisor.instance_handle import HandlerError, InstanceDied
from project_o.supervisor.instance_pool import InstancePool

__all__ = ["deliver_feedback", "failed_hooks"]


async def deliver_feedback(
    pool: InstancePool, feedback: dict[str, Any], timeout: float, events: EventLog,
) -> str | None:
    """Run the main's feedback hooks on ``feedback``; None once they ran, else why not."""
    try:
        main = await pool.wait_for_main(timeout)
        async with asyncio.timeout(timeout):
            reports = await main.feedback(f"feedback-{uuid.uuid4().hex}", feedback)
    except (NoInstanceAvailable, RequestTimeout):
        return "no instance of the agent was ready to take it"
    except TimeoutError:
        return f"the feedback hooks did not finish within {timeout:g} s; they may still run"
    except InstanceDied as died:
        return f"the instance died before its feedback hooks finished: {died.reason}"
    except HandlerError as exc:
        return f"the agent refused the feedback: {exc.kind}: {exc.message}"
    failed = failed_hooks(reports)
    if not failed:
        return None
    events.record("feedback_hook_failed", str(feedback.get("request_id")),
                  "; ".join(failed), version=main.version)
    return f"feedback hooks raised: {'; '.join(failed)}"


def failed_hooks(reports: Any) -> list[str]:
    """``hook: Type: message`` for each failed hook in an instance's feedback reports."""
    if not isinstance(reports, list):
        return []
    failed = []
    for report in reports:
        if isinstance(report, dict) and report.get("ok") is False:
            error = report.get("error")
            what = f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else "?"
            failed.append(f"{report.get('hook')}: {what}")
    return failed
