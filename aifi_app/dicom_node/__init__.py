"""The DICOM node: Storage and Verification SCP, Storage and Verification SCU (pynetdicom)."""
