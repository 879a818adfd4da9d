"""The `denoise` command line: a thin layer over the Python API.

Each subcommand lives in `denoise/commands/<name>.py` and registers itself on `app`.
`denoise FILE...` (no subcommand) means `denoise enhance FILE...`.
"""

from __future__ import annotations

import sys

import typer

from denoise.commands import enhance, eval as eval_command, export, models, stream, train

app = typer.Typer(
    name="denoise",
    help="Remove noise from speech: files, folders, live streams; train and fine-tune with Model as Loss.\n\n"
    "Examples:\n\n"
    "  denoise talk.wav                   # writes talk_enhanced.wav\n\n"
    "  denoise recordings/ -o clean/      # a whole folder, tree mirrored\n\n"
    "  denoise train --clean speech/ --noise noise/ --out runs/mine",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)



@app.callback(invoke_without_command=True)
def _root(
    context: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True),
) -> None:
    if version:
        from denoise import __version__

        typer.echo(__version__)
        raise typer.Exit()
    if context.invoked_subcommand is None:
        typer.echo(context.get_help())


for module in (enhance, stream, train, export, eval_command, models):
    module.register(app)


def _with_default_command(argv: list[str]) -> list[str]:
    """Insert `enhance` when the first argument is not a subcommand or a top-level option."""
    commands = {command.name or command.callback.__name__ for command in app.registered_commands}
    commands |= {group.name for group in app.registered_groups}
    if argv and argv[0] not in commands and argv[0] not in ("-h", "--help", "--version"):
        return ["enhance", *argv]
    return argv


def main() -> None:
    app(args=_with_default_command(sys.argv[1:]), prog_name="denoise")


if __name__ == "__main__":
    main()
