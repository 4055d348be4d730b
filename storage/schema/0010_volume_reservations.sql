-- Stakes the operator API has admitted under a player's daily volume limit but whose
-- ticket row the round scheduler has not written yet.
--
-- The limit check sums the player's tickets of the day; a bet is not a ticket until its
-- scheduler inserts it, so two concurrent bets would each see the other's stake missing
-- and pass the limit together. Under a per-player advisory lock the check adds these rows
-- (those without a ticket row yet: once the ticket exists it counts, or not, by its own
-- state) and records its own stake here before letting the bet go on. Rows are deleted
-- once the scheduler has answered; a row left by a lost replica stops counting after a
-- lease (storage.operators) and is pruned by the player's next release.
CREATE TABLE volume_reservations (
    ticket_id       text PRIMARY KEY,
    operator_id     text NOT NULL,
    player_id       text NOT NULL,
    currency        text NOT NULL,
    day_start       timestamptz NOT NULL,
    stake           numeric(38, 0) NOT NULL CHECK (stake > 0),
    reserved_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX volume_reservations_player ON volume_reservations (operator_id, player_id, currency);
