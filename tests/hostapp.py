"""A small host application for the tests, configured from the environment so that a worker
subprocess (``flask --app tests.hostapp:create_app backups worker``) builds the same app."""

from __future__ import annotations

import json
import os
from datetime import datetime
from decimal import Decimal

from flask import Flask, request
from flask_sqlalchemy import SQLAlchemy

from flask_backup_manager import BackupManager

db = SQLAlchemy()


class Customer(db.Model):
    __tablename__ = "customers"
    id = db.Column(db.Integer, primary_key=True)
    name = db.Column(db.String(100), nullable=False)
    vip = db.Column(db.Boolean, nullable=False, default=False)
    joined = db.Column(db.DateTime, nullable=False)
    prefs = db.Column(db.JSON)


class Order(db.Model):
    __tablename__ = "orders"
    id = db.Column(db.Integer, primary_key=True)
    customer_id = db.Column(db.Integer, db.ForeignKey("customers.id"), nullable=False)
    total = db.Column(db.Numeric(12, 2), nullable=False)
    note = db.Column(db.Text)


ENV = {
    "SQLALCHEMY_DATABASE_URI": "HOSTAPP_DATABASE_URL",
    "BACKUP_MANAGER_REDIS_URL": "HOSTAPP_REDIS_URL",
    "BACKUP_MANAGER_QUEUE": "HOSTAPP_QUEUE",
    "BACKUP_MANAGER_STORAGE_DIR": "HOSTAPP_STORAGE_DIR",
}


def create_app(config: dict | None = None) -> Flask:
    app = Flask(__name__, instance_path=os.environ.get("HOSTAPP_INSTANCE"))
    app.config["SECRET_KEY"] = "test-secret"
    app.config["BACKUP_MANAGER_MAX_ACTIVE"] = 100  # tests queue many; one test pins the default
    app.config.update(json.loads(os.environ.get("HOSTAPP_CONFIG", "{}")))
    for key, var in ENV.items():
        if os.environ.get(var):
            app.config[key] = os.environ[var]
    app.config.update(config or {})
    db.init_app(app)
    access = None
    if app.config.get("HOSTAPP_ACCESS", "header") == "header":
        # Tests say which permissions a request has; a real app would look at its login.
        def access(permission: str) -> bool:
            granted = request.headers.get("X-Test-Permissions", "view,create,download,delete")
            return permission in granted.split(",")

    BackupManager(app, db=db, access=access, identity=lambda: "tester")
    return app


def seed(customers: int = 50, orders_each: int = 3) -> None:
    for i in range(1, customers + 1):
        db.session.add(
            Customer(
                id=i,
                name=f"customer {i} 'quoted'",
                vip=i % 7 == 0,
                joined=datetime(2024, 1, 1, 12, 0, i % 60, 123456),
                prefs={"n": i},
            )
        )
    db.session.flush()
    for i in range(1, customers * orders_each + 1):
        db.session.add(
            Order(
                customer_id=(i % customers) + 1,
                total=Decimal(i) / 4,
                note=None if i % 5 else "tab\there",
            )
        )
    db.session.commit()
