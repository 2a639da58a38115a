"""Bridges to the tools a behaviour lab uses, each behind its own extra and imported only when used.

* :mod:`imgstore.integrations.sleap_io` (``[sleap]``): a sleap-io ``VideoBackend`` over a store, and
  SLEAP projects (also SLEAP <= 1.4 ones) whose videos are stores;
* :mod:`imgstore.integrations.napari` (``[napari]``): the npe2 reader plugin (``napari.yaml``);
* :mod:`imgstore.integrations.nwb` (``[nwb]``): a store as an NWB ``ImageSeries``;
* :mod:`imgstore.integrations.dataset`: frames for PyTorch-style data loaders (no extra).

``import imgstore`` imports none of them.
"""
