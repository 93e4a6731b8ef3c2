package sqlite

// UnreadQuery is the unread count's query, for the query plan test.
const UnreadQuery = unreadQuery
