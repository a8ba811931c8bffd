-- The journey that stored a payment (NULL: stored by the payment system's door while no
-- journey ran). A journey's activity retried after its first attempt committed finds its
-- own row and answers as the first attempt did, instead of calling its own payment a
-- duplicate and leaving the journey reminding a customer who paid.
ALTER TABLE payments ADD COLUMN journey_id text;
