package sqlite

// ListQuery is List's query, for the query plan test.
const ListQuery = listQuery
