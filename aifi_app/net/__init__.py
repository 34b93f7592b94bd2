"""Network security shared by every link: TLS contexts for DICOM and HTTPS."""
