"""SQL access to the lakehouse: the views of database ``recsys`` and the JDBC (Thrift) server."""
