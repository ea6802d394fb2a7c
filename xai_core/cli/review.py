"""``xaudit users`` (accounts) and ``xaudit review`` (blinded reading studies).

The CLI acts as :data:`~xai_core.review.accounts.LOCAL`: whoever runs it holds the workspace, so it
may do what an admin may. Passwords never appear on the command line: they are typed twice at a
hidden prompt, or read from standard input with ``--password-stdin`` (scripts, CI).
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import typer

from xai_core.cli.base import app, echo_rows
from xai_core.errors import ConfigError

users_app = typer.Typer(help="Accounts of the dashboard's sign-in: add, list, disable, reset passwords.",
                        no_args_is_help=True)
review_app = typer.Typer(help="Blinded reading studies: create, follow, close, export ratings, agreement.",
                         no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(review_app, name="review")

PASSWORD_STDIN = typer.Option(False, "--password-stdin",
                              help="Read the password from the first line of standard input (no prompt).")


# ------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------
def _split(values: Optional[list[str]]) -> list[str]:
    """Repeated options and comma-separated lists alike, blanks dropped."""
    return [v.strip() for item in values or [] for v in item.split(",") if v.strip()]


def _integers(values: list[str], option: str) -> list[int]:
    """``values`` as integers, or one line naming the first that is not one."""
    out = []
    for value in values:
        if not value.lstrip("-").isdigit():
            raise ConfigError(f"{option} takes whole numbers (sample keys); got {value!r}")
        out.append(int(value))
    return out


def read_password(from_stdin: bool) -> str:
    """A new password: the first line of standard input, or typed twice at a hidden prompt.

    Too short or too long, and two different entries, are one-line errors (nothing is changed)."""
    from xai_core.review.accounts import check_password

    if from_stdin:
        return check_password(sys.stdin.readline().rstrip("\r\n"))
    first = check_password(typer.prompt("Password", hide_input=True))
    if typer.prompt("Repeat the password", hide_input=True) != first:
        raise ConfigError("the two passwords differ; nothing was changed, run the command again")
    return first


def _when(value: Any, missing: str = "-") -> str:
    """A timestamp to the minute, or ``missing`` when there is none."""
    if value is None or value != value:  # None or NaT
        return missing
    return f"{value:%Y-%m-%d %H:%M}"


# ------------------------------------------------------------------------------------------
# xaudit users
# ------------------------------------------------------------------------------------------
@users_app.command("add")
def users_add(
    name: str = typer.Argument(..., help="Account name (what the person types to sign in)."),
    role: str = typer.Option(..., "--role", help="admin (everything) or reviewer (reads the studies assigned)."),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Add an account; the first admin turns the dashboard's sign-in on."""
    from xai_core.review import accounts

    role = accounts.check_role(role)
    name = accounts.check_name(name)
    if name in set(accounts.list_users()["name"]):  # before the prompt, not after it
        raise ConfigError(f"an account named {name!r} exists; pick another name or reset its password")
    first_admin = role == "admin" and not accounts.login_enabled()
    accounts.add_user(name, role, read_password(password_stdin), actor=accounts.LOCAL)
    typer.echo(f"added {role} {name!r}")
    if first_admin:
        typer.echo("the dashboard now asks everyone to sign in (this is the workspace's first admin)")


@users_app.command("list")
def users_list() -> None:
    """Every account: name, role, active or disabled, when it was added (never a password)."""
    from xai_core.review.accounts import list_users

    rows = list_users().to_dict("records")
    echo_rows(rows, "no accounts: the dashboard is single-user; add an admin with "
                    "`xaudit users add NAME --role admin`",
              f"{'name':<24} {'role':<9} {'status':<9} added",
              lambda r: f"{r['name']:<24} {r['role']:<9} {'disabled' if r['disabled'] else 'active':<9} "
                        f"{_when(r['created_at'])}")


@users_app.command("disable")
def users_disable(name: str = typer.Argument(..., help="Account name.")) -> None:
    """Disable an account: it cannot sign in, and its open sessions end at once."""
    from xai_core.review import accounts

    accounts.set_disabled(name, True, actor=accounts.LOCAL)
    typer.echo(f"disabled {name!r} (its sessions ended)")


@users_app.command("enable")
def users_enable(name: str = typer.Argument(..., help="Account name.")) -> None:
    """Enable a disabled account again."""
    from xai_core.review import accounts

    accounts.set_disabled(name, False, actor=accounts.LOCAL)
    typer.echo(f"enabled {name!r}")


@users_app.command("reset-password")
def users_reset_password(
    name: str = typer.Argument(..., help="Account name."),
    password_stdin: bool = PASSWORD_STDIN,
) -> None:
    """Set a new password; the account's open sessions end."""
    from xai_core.review import accounts

    if name not in set(accounts.list_users()["name"]):  # before the prompt, not after it
        raise ConfigError(f"no account named {name!r}; list them with `xaudit users list`")
    accounts.reset_password(name, read_password(password_stdin), actor=accounts.LOCAL)
    typer.echo(f"new password set for {name!r} (its sessions ended)")


# ------------------------------------------------------------------------------------------
# xaudit review
# ------------------------------------------------------------------------------------------
@review_app.command("create")
def review_create(
    name: str = typer.Argument(..., help="Study name."),
    checkpoint: Optional[list[str]] = typer.Option(None, "--checkpoint", "-c", help="Checkpoint id or name (repeatable or comma-separated)."),
    method: Optional[list[str]] = typer.Option(None, "--method", "-m", help="Attribution method (repeatable or comma-separated)."),
    sample: Optional[list[str]] = typer.Option(None, "--sample", help="Sample key (repeatable or comma-separated); or use --random."),
    random: Optional[int] = typer.Option(None, "--random", help="That many random test samples every checkpoint classifies correctly."),
    reviewer: Optional[list[str]] = typer.Option(None, "--reviewer", "-r", help="Reviewer account (repeatable or comma-separated)."),
    show_contour: bool = typer.Option(False, "--show-contour", help="Show the lesion contour to the readers."),
    catch_trials: int = typer.Option(0, "--catch-trials", help="Catch cases (random and edge maps) mixed into the pool."),
    cases_per_reviewer: Optional[int] = typer.Option(None, "--cases-per-reviewer", help="Cap each reviewer's queue (default: every case the design gives them)."),
    readers_per_case: int = typer.Option(2, "--readers-per-case", help="Different reviewers who read each case (2+ for agreement)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample draw and the queues."),
) -> None:
    """Create a blinded study: every (checkpoint, method, sample) map becomes a case read by
    --readers-per-case reviewers, each in their own shuffled queue."""
    from xai_core.review.accounts import LOCAL
    from xai_core.review.studies import StudySpec, create_study

    samples = _integers(_split(sample), "--sample")
    if samples and random is not None:
        raise ConfigError("choose the images with --sample or with --random, not both")
    if not samples and random is None:
        raise ConfigError("choose the images: --sample PK (repeatable) or --random N")
    spec = StudySpec(name=name, checkpoints=tuple(_split(checkpoint)), methods=tuple(_split(method)),
                     reviewers=tuple(_split(reviewer)), samples=tuple(samples), n_random=random,
                     show_contour=show_contour, catch_trials=catch_trials, cases_per_reviewer=cases_per_reviewer,
                     readers_per_case=readers_per_case, seed=seed)
    made = create_study(spec, actor=LOCAL)
    typer.echo(f"created study {made['study']!r}: {made['cases']} cases, {made['reviewers']} reviewers, "
               f"{made['assignments']} readings ({readers_per_case} per case)")


@review_app.command("status")
def review_status(study: Optional[str] = typer.Argument(None, help="A study: its per-reviewer progress (default: list the studies).")) -> None:
    """The studies (status, cases, ratings), or one study's progress per reviewer."""
    from xai_core.review.studies import list_studies, study_status

    studies = list_studies()
    if study is None:
        echo_rows(studies.to_dict("records"), "no review studies; create one with `xaudit review create`",
                  f"{'study':<32} {'status':<7} {'cases':>6} {'reviewers':>9} {'rated':>11}  created",
                  lambda r: f"{r['study']:<32} {r['status']:<7} {r['cases']:>6} {r['reviewers']:>9} "
                            f"{str(r['rated']) + '/' + str(r['assigned']):>11}  {_when(r['created_at'])}")
        return
    progress = study_status(study)  # an unknown study: one line naming the studies there are
    row = studies.loc[studies["study"] == study].iloc[0]
    typer.echo(f"study {study!r} ({row['status']}): {row['cases']} cases, {row['rated']}/{row['assigned']} "
               f"readings rated")
    echo_rows(progress.to_dict("records"), "no reviewers assigned",
              f"{'reviewer':<24} {'rated':>11}  submitted",
              lambda r: f"{r['reviewer']:<24} {str(r['rated']) + '/' + str(r['assigned']):>11}  "
                        f"{_when(r['submitted_at'], 'not yet')}")


def _set_status(study: str, status: str) -> None:
    from xai_core.review.accounts import LOCAL
    from xai_core.review.studies import set_study_status

    set_study_status(study, status, actor=LOCAL)
    typer.echo(f"study {study!r} is {status}" + (": no more ratings are taken" if status == "closed" else ""))


@review_app.command("close")
def review_close(study: str = typer.Argument(..., help="Study name.")) -> None:
    """Close a study: reviewers can no longer rate or change ratings."""
    _set_status(study, "closed")


@review_app.command("reopen")
def review_reopen(study: str = typer.Argument(..., help="Study name.")) -> None:
    """Reopen a closed study."""
    _set_status(study, "open")


@review_app.command("export")
def review_export(
    study: str = typer.Argument(..., help="Study name."),
    output: str = typer.Argument(..., help="Output file ending in .csv or .parquet."),
) -> None:
    """Every rating of a study, unblinded (checkpoint, method, sample, reviewer), as CSV or Parquet
    (in CSV a note that a spreadsheet would run as a formula starts with ')."""
    from pathlib import Path

    from xai_core.metrics.queries import write_frame
    from xai_core.review.accounts import LOCAL
    from xai_core.review.export import spreadsheet_safe_frame
    from xai_core.review.results import ratings_frame

    if Path(output).suffix.lower() not in (".csv", ".parquet"):
        raise ConfigError(f"cannot export to {Path(output).name!r}: use a .csv or .parquet file name")
    frame = ratings_frame(study, actor=LOCAL)
    if Path(output).suffix.lower() == ".csv":  # reviewers' notes are free text: no formula for a spreadsheet to run
        frame = spreadsheet_safe_frame(frame)
    path = write_frame(frame, output)  # a temp file renamed into place: never half-written
    typer.echo(f"wrote {len(frame)} ratings to {path}")


def _num(value: Any) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


@review_app.command("agreement")
def review_agreement(study: str = typer.Argument(..., help="Study name.")) -> None:
    """Inter-reader agreement of a study: Krippendorff's alpha (ordinal evidence match, nominal
    plausibility) and Fleiss' kappa, with 95% bootstrap CIs over the cases read twice or more."""
    from xai_core.review.accounts import LOCAL
    from xai_core.review.results import study_results

    results = study_results(study, actor=LOCAL)
    if results.ratings.empty:
        typer.echo(f"study {study!r}: no ratings yet, so no agreement")
        return
    echo_rows(results.agreement.to_dict("records"), "no agreement measures",
              f"{'measure':<28} {'outcome':<15} {'value':>6}  {'95% CI':<16} {'cases':>5} {'readers':>7}  note",
              lambda r: f"{r['measure']:<28} {r['outcome']:<15} {_num(r['value']):>6}  "
                        f"{'[' + _num(r['ci_low']) + ', ' + _num(r['ci_high']) + ']' if r['value'] == r['value'] else '-':<16} "
                        f"{r['n_cases']:>5} {r['n_readers']:>7}  {r['note']}".rstrip())
