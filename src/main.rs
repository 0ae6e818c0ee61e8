//! The `lossgraph` command line.
fn main() {
    println!("lossgraph");
}
