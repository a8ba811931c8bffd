-- What customers receive (issue 13): a product's names for short and spoken channels, an
-- organisation's short name, and a policy's own payment period (reinstatement owes every
-- premium that fell due).
ALTER TABLE products ADD COLUMN short_name text;
ALTER TABLE products ADD COLUMN spoken_name text;
ALTER TABLE customers ADD COLUMN short_name text;
ALTER TABLE policies ADD COLUMN payment_period text
    CHECK (payment_period IN ('annual', 'semi_annual', 'quarterly', 'monthly'));
