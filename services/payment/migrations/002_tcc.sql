-- 002_tcc: the payment a TCC try authorises (mode tcc, services/payment/steps.c).
--
-- A try records the payment 'authorized': the money is promised, not taken. The confirm
-- captures it ('captured'); the cancel voids it ('voided').
ALTER TABLE payments DROP CONSTRAINT payments_status_check,
        ADD CONSTRAINT payments_status_check
        CHECK (status IN ('captured', 'refunded', 'authorized', 'voided'));
