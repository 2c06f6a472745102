"""Install what frn-paddle needs without touching a PaddlePaddle that is already there.

    python tools/install.py [--dry-run] [--paddle SPEC]

PaddlePaddle ships as several distributions of the same `paddle` module (paddlepaddle,
paddlepaddle-gpu, and others from Paddle's own index). Installing the CPU wheel over a
GPU build (as `pip install paddlepaddle` would on AI Studio) leaves two packages writing
one module. So this script looks for any installed distribution named paddlepaddle*
(importlib.metadata) and:
  - none found: installs the CPU wheel `paddlepaddle` (SPEC, default below), then the rest;
  - one found: leaves it alone and installs only requirements.txt (with numpy<2 when that
    Paddle is 2.x, whose wheels are built against numpy 1).
It uses only the standard library, so it runs before anything is installed.
"""
import argparse
import importlib.metadata
import os
import re
import shlex
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(REPO, 'requirements.txt')
CPU_PADDLE = 'paddlepaddle>=2.6,<4'  # the CPU wheel from PyPI when no Paddle is installed (tested: 3.3.1, 2.6.2)


def installed_paddle(paths=None):
    """[(name, version)] of the installed distributions whose name starts with 'paddlepaddle'."""
    found = {}
    for dist in importlib.metadata.distributions(**({'path': paths} if paths else {})):
        name = (dist.metadata['Name'] or '').strip()
        if re.match(r'paddlepaddle([-_.].*)?$', name, flags=re.I):
            found.setdefault(name.lower().replace('_', '-'), dist.version)
    return sorted(found.items())


def plan(paths=None, paddle_spec=CPU_PADDLE):
    """(what was found, the pip commands to run): each command is an argv list."""
    pip = [sys.executable, '-m', 'pip', 'install']
    present = installed_paddle(paths)
    commands = []
    extra = []
    if not present:
        commands.append(pip + [paddle_spec])
    elif any(version.split('.')[0].isdigit() and int(version.split('.')[0]) < 3 for _, version in present):
        extra = ['numpy<2']  # Paddle 2.x wheels are built against numpy 1
    commands.append(pip + ['-r', REQUIREMENTS] + extra)
    return present, commands


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--dry-run', action='store_true', help='print the pip commands instead of running them')
    parser.add_argument('--paddle', default=CPU_PADDLE,
                        help='what to install when no paddlepaddle* distribution is present')
    parser.add_argument('--site', action='append', default=None,
                        help='look for installed distributions only in this folder (repeatable; for tests)')
    args = parser.parse_args(argv)
    present, commands = plan(args.site, args.paddle)
    if present:
        print('found ' + ', '.join(f'{name} {version}' for name, version in present)
              + ': leaving PaddlePaddle as it is')
    else:
        print(f'no paddlepaddle* distribution found: installing the CPU wheel ({args.paddle})')
    for command in commands:
        print('$ python ' + ' '.join(shlex.quote(c) for c in command[1:]), flush=True)
        if not args.dry_run:
            code = subprocess.call(command)
            if code:
                print(f'error: pip failed with exit code {code}', file=sys.stderr)
                return code
    return 0


if __name__ == '__main__':
    sys.exit(main())
