"""The DICOM node: Storage and Verification SCP (our own acceptor) and SCU (pynetdicom)."""
