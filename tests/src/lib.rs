//! A host simulator of Xen: domains, grant tables, event channels and an in-memory xenstored.
