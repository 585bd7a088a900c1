-- 002_tcc: the stock a TCC try sets aside (mode tcc, services/product/steps.c).
--
-- A try holds stock without taking it: products.held grows and the reservation is 'tried',
-- so that available = stock - held. The confirm takes it (stock and held both shrink, the
-- reservation is 'sold'); the cancel gives the hold up (held shrinks, 'released'). Every
-- reservation that takes stock also leaves what is held alone: stock - held >= quantity.
ALTER TABLE products ADD COLUMN held bigint NOT NULL DEFAULT 0,
        ADD CONSTRAINT products_held_check CHECK (held >= 0 AND held <= stock);

ALTER TABLE reservations DROP CONSTRAINT reservations_status_check,
        ADD CONSTRAINT reservations_status_check
        CHECK (status IN ('held', 'sold', 'released', 'tried'));
