// Package servicetest is the example of docs/testing.md: a small Go service (Orders), and its
// integration test, which runs PostgreSQL in a container with testcontainers-go and cmpool
// in-process in front of it, the way the service meets them in production.
package servicetest

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Orders stores orders and the stock they take.
type Orders struct {
	db *pgxpool.Pool
}

// NewOrders returns Orders over db.
func NewOrders(db *pgxpool.Pool) *Orders { return &Orders{db: db} }

// Migrate creates the tables.
func (o *Orders) Migrate(ctx context.Context) error {
	_, err := o.db.Exec(ctx, `
		create table if not exists stock (item text primary key, quantity int not null check (quantity >= 0));
		create table if not exists orders (id bigserial primary key, item text not null references stock, quantity int not null)`)
	return err
}

// Restock adds quantity of item.
func (o *Orders) Restock(ctx context.Context, item string, quantity int) error {
	_, err := o.db.Exec(ctx, `insert into stock values ($1, $2)
		on conflict (item) do update set quantity = stock.quantity + excluded.quantity`, item, quantity)
	return err
}

// Place records an order and takes its items from the stock, in one transaction: with too
// little stock, nothing changes.
func (o *Orders) Place(ctx context.Context, item string, quantity int) (int64, error) {
	var id int64
	err := pgx.BeginFunc(ctx, o.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "update stock set quantity = quantity - $2 where item = $1", item, quantity); err != nil {
			return fmt.Errorf("take %d %s: %w", quantity, item, err)
		}
		return tx.QueryRow(ctx, "insert into orders (item, quantity) values ($1, $2) returning id", item, quantity).Scan(&id)
	})
	return id, err
}

// Stock returns what is left of item.
func (o *Orders) Stock(ctx context.Context, item string) (int, error) {
	var quantity int
	err := o.db.QueryRow(ctx, "select quantity from stock where item = $1", item).Scan(&quantity)
	return quantity, err
}
