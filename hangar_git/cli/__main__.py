"""``python -m hangar_git.cli``: run ``git hangar`` without the installed script."""

from . import main

if __name__ == "__main__":  # pragma: no cover
    main()
