{# Amounts are stored in cents: convert them to dollars here, once. #}
with source as (
    select * from {{ ref('raw_payments') }}
),

renamed as (
    select
        id as payment_id,
        order_id,
        payment_method,
        amount / 100 as amount
    from source
)

select * from renamed
