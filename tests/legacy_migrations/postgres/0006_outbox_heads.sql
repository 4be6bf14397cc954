-- Claims take each chat's first unsent row only (its messages go out in order): finding
-- whether a row has an unsent predecessor in its chat is one probe here.
CREATE INDEX outbox_unsent ON outbox (chat, id) WHERE status IN ('pending', 'sending');
