"""Deterministic demo data: the same few thousand rows every time, inserted once."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from .models import Category, Customer, Order, OrderLine, Product, User, db

CATEGORIES = {
    "Books": "Paper and ink, new and used.",
    "Music": "Records, tapes and CDs.",
    "Garden": "Tools, seeds and pots.",
    "Kitchen": "Pans, knives and gadgets.",
    "Toys": "For children of all ages.",
    "Office": "Pens, paper and desks.",
    "Outdoor": "Tents, boots and lamps.",
    "Games": "Board games and puzzles.",
}
COUNTS = {"products": 300, "customers": 600, "orders": 1500}
ADJECTIVES = ["Red", "Small", "Deluxe", "Classic", "Quiet", "Bright", "Sturdy", "Tiny", "Grand"]
NOUNS = ["Lamp", "Kettle", "Notebook", "Spade", "Puzzle", "Tent", "Album", "Knife", "Chair"]
FIRST = ["Ada", "Björn", "Chloé", "Dmitri", "Eve", "François", "Grace", "Hiro", "Inès", "José"]
LAST = ["O'Brien", "Müller", "Smith", "Nakamura", "García", "Kowalski", "Dubois", "Rossi"]
STREETS = ["Elm Street", "Rue de la Paix", "Hauptstraße", "Via Roma", "Kirkegata", "Calle Mayor"]
TOWNS = ["Springfield", "Lyon", "Köln", "Torino", "Bergen", "Sevilla"]
START = datetime(2024, 1, 1, 9, 0, 0)


def seed(admin_password: str = "admin") -> bool:
    """Create the tables and, when the shop is empty, fill it. Returns whether it seeded."""
    db.create_all()
    if db.session.scalar(sa.select(sa.func.count()).select_from(Category)):
        _add_contacts()
        return False
    rng = random.Random(20240101)
    admin = User(username="admin", is_admin=True)
    admin.set_password(admin_password)
    db.session.add(admin)

    db.session.execute(
        sa.insert(Category),
        [{"id": i, "name": n, "description": d} for i, (n, d) in enumerate(CATEGORIES.items(), 1)],
    )
    products = []
    for i in range(1, COUNTS["products"] + 1):
        products.append(
            {
                "id": i,
                "sku": f"SKU-{i:05d}",
                "name": f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} #{i}",
                "category_id": rng.randint(1, len(CATEGORIES)),
                "price": Decimal(rng.randint(99, 19999)) / 100,
                "stock": rng.randint(0, 250),
                "active": rng.random() > 0.1,
                "attributes": {"colour": rng.choice(["red", "green", "blue"]), "weight_g": i * 7}
                if i % 3
                else None,
                "created_at": START + timedelta(hours=i * 5),
            }
        )
    db.session.execute(sa.insert(Product), products)
    customers = [
        {
            "id": i,
            "email": f"customer{i}@example.com",
            "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
            **contact(i),
            "newsletter": i % 4 == 0,
            "joined_at": START + timedelta(minutes=i * 397),
        }
        for i in range(1, COUNTS["customers"] + 1)
    ]
    db.session.execute(sa.insert(Customer), customers)
    orders, lines = [], []
    for i in range(1, COUNTS["orders"] + 1):
        total = Decimal(0)
        for _ in range(rng.randint(1, 4)):
            product = rng.choice(products)
            quantity = rng.randint(1, 5)
            total += product["price"] * quantity
            lines.append(
                {
                    "id": len(lines) + 1,
                    "order_id": i,
                    "product_id": product["id"],
                    "quantity": quantity,
                    "unit_price": product["price"],
                }
            )
        orders.append(
            {
                "id": i,
                "customer_id": rng.randint(1, COUNTS["customers"]),
                "placed_at": START + timedelta(minutes=i * 331, seconds=i % 60),
                "status": rng.choice(["new", "paid", "shipped", "shipped", "returned"]),
                "total": total,
                "notes": None if i % 7 else f"Leave at the door; tab\there, line\nbreak ({i})",
            }
        )
    db.session.execute(sa.insert(Order), orders)
    db.session.execute(sa.insert(OrderLine), lines)
    if db.engine.dialect.name == "postgresql":
        # Explicit ids leave the sequences at 1: move them past the seeded rows.
        for model in (Category, Product, Customer, Order, OrderLine):
            db.session.execute(
                sa.text(
                    f"SELECT setval(pg_get_serial_sequence('{model.__tablename__}', 'id'), "
                    f"(SELECT max(id) FROM {model.__tablename__}))"
                )
            )
    db.session.commit()
    return True


def contact(i: int) -> dict[str, str | None]:
    """Customer ``i``'s address and phone, from ``i`` alone: the seed's random sequence (and so
    every other seeded value) stays what it was before the shop had these columns."""
    return {
        "address": f"{i} {STREETS[i % len(STREETS)]}, {10000 + i * 7} {TOWNS[i % len(TOWNS)]}",
        "phone": None if i % 5 == 0 else f"+1 555 {i:04d}",
    }


def _add_contacts() -> None:
    """A shop seeded before customers had an address and a phone (an instance folder kept
    from an older checkout) gains both, filled as :func:`seed` fills them: its ``vendor``
    profile names ``customers.address``, so a redacted backup would otherwise be refused."""
    have = {c["name"] for c in sa.inspect(db.engine).get_columns("customers")}
    if {"address", "phone"} <= have:
        return
    with db.engine.begin() as con:
        if "address" not in have:
            con.execute(
                sa.text("ALTER TABLE customers ADD COLUMN address VARCHAR(200) NOT NULL DEFAULT ''")
            )
        if "phone" not in have:
            con.execute(sa.text("ALTER TABLE customers ADD COLUMN phone VARCHAR(40)"))
        ids = con.execute(sa.text("SELECT id FROM customers")).scalars().all()
        con.execute(
            sa.text("UPDATE customers SET address = :address, phone = :phone WHERE id = :id"),
            [{"id": i, **contact(i)} for i in ids],
        )


def counts() -> dict[str, int]:
    return {
        m.__tablename__: db.session.scalar(sa.select(sa.func.count()).select_from(m)) or 0
        for m in (Category, Product, Customer, Order, OrderLine)
    }
