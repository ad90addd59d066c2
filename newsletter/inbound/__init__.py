"""What the mail world sends back: bounces, complaints, auto-replies and mailto unsubscribes."""
