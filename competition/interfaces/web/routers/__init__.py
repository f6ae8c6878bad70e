"""The portal's routes, by area: sign-in, participants' pages, the JSON API, the organizer."""
