"""Report viewers as data: the sections components return from ``report_data`` (``components.report_data``)."""
