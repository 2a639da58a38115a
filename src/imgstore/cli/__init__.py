"""Command-line tools: ``imgstore <command>`` and one ``imgstore-<command>`` script per command.

Every command module has ``main(argv=None, prog=None) -> int``; the umbrella
``imgstore`` command (:mod:`imgstore.cli.main`) dispatches to them. Modules are
imported only when their command runs so ``imgstore --help`` stays fast.
"""
