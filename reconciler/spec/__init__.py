"""Job files: HCL text -> strict, Nomad-compatible, frozen job models, with located problems."""
