"""The Temporal Schedules the commands install (the daily scan, the monthly campaign):
built the same way, installed safely again and again, and described the same way."""

from __future__ import annotations

import json
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleDescription,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleUpdate,
)

from domain.plan import TZ

EVERY_DAY = ScheduleRange(1, 31)


def shanghai_schedule(action: ScheduleActionStartWorkflow, *, hour: int,
                      overlap: ScheduleOverlapPolicy, catchup_window: timedelta,
                      day_of_month: ScheduleRange = EVERY_DAY) -> Schedule:
    """`action` at `hour`:00 Shanghai time on the days of the month given (every day by
    default)."""
    return Schedule(
        action=action,
        spec=ScheduleSpec(
            calendars=[ScheduleCalendarSpec(day_of_month=[day_of_month],
                                            hour=[ScheduleRange(hour)],
                                            minute=[ScheduleRange(0)],
                                            second=[ScheduleRange(0)])],
            time_zone_name=TZ.key),
        policy=SchedulePolicy(overlap=overlap, catchup_window=catchup_window),
    )


async def upsert_schedule(client: Client, schedule_id: str, schedule: Schedule
                          ) -> ScheduleDescription:
    """Create a schedule, or update it in place when it exists (so installing is safe to
    repeat)."""
    try:
        handle = await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        handle = client.get_schedule_handle(schedule_id)
        await handle.update(lambda _old: ScheduleUpdate(schedule=schedule))
    return await handle.describe()


def schedule_info(desc: ScheduleDescription) -> dict:
    action = desc.schedule.action
    policy = desc.schedule.policy
    upcoming = desc.info.next_action_times
    return {
        "id": desc.id,
        "state": "paused" if desc.schedule.state.paused else "active",
        "workflow": action.workflow if isinstance(action, ScheduleActionStartWorkflow)
        else None,
        "task_queue": getattr(action, "task_queue", None),
        "overlap": policy.overlap.name,
        "catchup_window": str(policy.catchup_window),
        "time_zone": desc.schedule.spec.time_zone_name,
        "next_run": upcoming[0].astimezone(TZ).isoformat() if upcoming else None,
    }


def print_schedule(desc: ScheduleDescription, runs: str, *, as_json: bool) -> None:
    """The installed schedule as one JSON line, or one line saying what `runs` when."""
    info = schedule_info(desc)
    print(json.dumps(info) if as_json else
          f"schedule {info['id']} {info['state']}: {runs} on task queue {info['task_queue']}; "
          f"overlap {info['overlap']}, catch-up window {info['catchup_window']}; "
          f"next run {info['next_run'] or '-'}")
