"""The target layer: what happens after the C is rendered, for a board.

- fit.py: will it fit (the pre-link estimate the build and the search's cost model use,
  and the check of the linked ELF's sizes);
- firmware.py: render the driver, linker script and Makefile, cross-build, measure;
- multimodel.py: several builds' models linked into one firmware;
- elf.py: the one ELF reader/patcher (symbols, section sizes, inputs patched into flash);
- unicorn.py: a firmware in the Unicorn engine (outputs, exact instruction counts);
- engines.py: the registry of what runs a build (host, unicorn, qemu, renode, a board
  over serial) for `mcuc run` and `mcuc validate`.

The console protocol every firmware prints is parsed in one place, mcuc.sim.protocol.
"""
