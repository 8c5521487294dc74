"""Records: how arraysets, samples and metadata are laid out as git trees.

The commit tree of a data commit is::

    hangar.json                            record-format version
    arraysets/<name>/schema                canonical JSON blob
    arraysets/<name>/samples/<fan-out>/<k> one gitlink per sample (id = digest)
    metadata/<k>                           blob holding the value
    changes                                the samples changed against the
                                           first parent (optional: see
                                           :mod:`hangar_git.records.changelog`)

See :mod:`hangar_git.records.layout` for the details. Every record read
from git passes through :mod:`hangar_git.records.validate` before it is
used; :mod:`hangar_git.records.trust` remembers the trees found sound.
"""
