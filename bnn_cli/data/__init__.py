"""Data: the strict IDX reader/writer (`idx`), the downloader with mirrors, checksums, atomic
writes and a lock (`download`), and the dataset registry and splits (`datasets`)."""
