"""What every command does alike: its parser's one-line errors, old flag spellings, and running `main`.

    @cli_main
    def main(argv=None):
        parser = new_parser(__doc__.split('\n')[0])
        ...

`cli_main` makes the process set-up (runtime/process.py) before `main` runs, so a command imports
at module level nothing that imports paddle. Errors a user can cause are one line on stderr.
"""
import argparse
import functools
import os
import sys

from runtime.process import Terminated, setup_process, sigterm_received
from utils import FRNError, os_error_cause


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error that points at --help."""

    def error(self, message):
        self.exit(2, f'error: {message} (see {self.prog} --help)\n')


def new_parser(description):
    return Parser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)


class _OldSpelling(argparse.Action):
    """A hidden, deprecated spelling of another flag: it does what that flag does, after a one-line note."""

    def __init__(self, option_strings, dest, flag=None):
        self.flag = flag
        super().__init__(option_strings, flag.dest, nargs=flag.nargs, const=flag.const, default=argparse.SUPPRESS,
                         type=flag.type, choices=flag.choices, help=argparse.SUPPRESS, metavar=flag.metavar)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f'note: {option_string} is now spelled {self.flag.option_strings[0]}; the old spelling still works '
              f'in this release and will then be removed', file=sys.stderr)
        self.flag(parser, namespace, values, self.flag.option_strings[0])


def add_old_spelling(parser, old, flag):
    """Accept `old` (such as '--use_gpu') for `flag`, the action parser.add_argument returned (such as --gpu's)."""
    parser.add_argument(old, action=_OldSpelling, flag=flag)


def command_line():
    return ' '.join([os.path.basename(sys.executable)] + sys.argv)


def cli_main(main):
    """Run `main()` as a command: the process set-up, then `main`; a user error or a file system error becomes one
    line on stderr, exit code 2.

    Ctrl-C exits with 130 and SIGTERM with 143, after the atomic writes have removed their
    temp files; the message says how to go on when the work in progress kept what it finished
    (`resume_hint`, which engine/runlock.RunLock adds to the interruption).
    """
    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        setup_process()  # also turns SIGTERM into Terminated
        try:
            try:
                return main(*args, **kwargs)
            except Exception as err:
                if not sigterm_received():
                    raise
                stop = Terminated()  # raised inside paddle's C++ code, which wrapped it in its own error
                stop.resume_hint = getattr(err, 'resume_hint', '')
                raise stop from None
        except FRNError as err:
            print(f'error: {err}', file=sys.stderr)
            sys.exit(2)
        except OSError as err:  # permission denied, no space left, read-only file system, ...
            where = f'{err.filename!r}: ' if err.filename else ''
            print(f'error: {where}{os_error_cause(err)}', file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt as err:
            print('interrupted' + getattr(err, 'resume_hint', ''), file=sys.stderr)
            sys.exit(130)
        except Terminated as err:
            print('terminated (SIGTERM)' + getattr(err, 'resume_hint', ''), file=sys.stderr)
            sys.exit(143)
    return wrapper
