"""`lapse task list | take | complete`: agents work their queue; outcomes reach the journey."""

from __future__ import annotations

import argparse
import getpass
import json

from commands.common import UserError, command, database, temporal
from domain.plan import TZ
from infra.agent_tasks import TaskError, TaskView, list_tasks
from infra.journeys import Journeys
from infra.tasks import OUTCOMES, complete_task, take_task


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("task", help="agent work: outbound calls, contact repair, reviews")
    tsub = p.add_subparsers(dest="task_command", required=True, metavar="ACTION")
    ls = tsub.add_parser("list", help="open tasks (or --status taken/done), most urgent first")
    ls.add_argument("--status", choices=["open", "taken", "done", "cancelled"])
    ls.add_argument("--kind", choices=sorted(OUTCOMES))
    ls.add_argument("--policy", metavar="POLICY_NUMBER")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=command(run_list))
    take = tsub.add_parser("take", help="take a task to work on it")
    take.add_argument("task_id")
    take.add_argument("--agent", default=getpass.getuser(), help="who takes it (default: you)")
    take.add_argument("--json", action="store_true")
    take.set_defaults(func=command(run_take))
    done = tsub.add_parser(
        "complete", help="record the outcome; the journey is told what it needs to know",
        description="Outcomes: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in OUTCOMES.items()))
    done.add_argument("task_id")
    done.add_argument("--outcome", required=True)
    done.add_argument("--note", default="")
    done.add_argument("--agent", default=getpass.getuser())
    done.add_argument("--json", action="store_true")
    done.set_defaults(func=command(run_complete))


def _line(t: TaskView) -> str:
    due = t.due_at.astimezone(TZ)
    sla = f" sla {t.sla_at.astimezone(TZ):%m-%d %H:%M}" if t.sla_at else ""
    flag = "  OVERDUE" if t.overdue else ""
    if t.journey_closed_at is not None:
        flag = f"  JOURNEY CLOSED ({t.journey_outcome or 'ended'})"
    who = f" [{t.taken_by}]" if t.taken_by else ""
    return (f"P{t.priority} {t.kind:<18} {t.policy_number:<14} due {due:%Y-%m-%d %H:%M}{sla}"
            f" {t.status}{who}{flag}\n   {t.task_id}")


async def run_list(args: argparse.Namespace, settings) -> int:
    async with database(settings) as pool, pool.acquire() as conn:
        tasks = await list_tasks(conn, status=args.status, kind=args.kind,
                                 policy_number=args.policy)
    if args.json:
        print(json.dumps([t.model_dump(mode="json") for t in tasks], ensure_ascii=False))
    else:
        print("\n".join(_line(t) for t in tasks) if tasks else "no tasks")
    return 0


async def run_take(args: argparse.Namespace, settings) -> int:
    async with database(settings) as pool, pool.acquire() as conn:
        try:
            task = await take_task(conn, args.task_id, args.agent)
        except TaskError as err:
            raise UserError(str(err)) from None
    if args.json:
        print(task.model_dump_json())
    else:
        print(_line(task))
        if task.script:
            print(f"\nscript:\n{task.script}")
    return 0


async def run_complete(args: argparse.Namespace, settings) -> int:
    async with database(settings) as pool, temporal(settings) as client:
        try:
            journeys = Journeys(client, settings.temporal_task_queue)
            done = await complete_task(pool, journeys, args.task_id,
                                       args.outcome, args.agent, args.note)
        except TaskError as err:
            raise UserError(str(err)) from None
    if args.json:
        print(json.dumps({"task": done.task.model_dump(mode="json"), "signal": done.signal,
                          "journey_running": done.journey_running}, ensure_ascii=False))
    else:
        told = (f"; journey told: {done.signal}" if done.signal else
                "" if done.journey_running else "; the journey is no longer running")
        print(f"task {args.task_id} done: {args.outcome}{told}")
    return 0
