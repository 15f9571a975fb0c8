"""One clear line for errors a user can cause, instead of a traceback."""

import functools
import sys


class RecipeError(Exception):
    """An error in the user's input or environment; printed as one line, exit code 2."""


def exit_on_recipe_error(func):
    """Run `func`; a RecipeError becomes `error: <message>` on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except RecipeError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    return wrapper
