"""State every instance shares through Redis: rate limits and lockouts
(:mod:`.ratelimit`), immediate logout (:mod:`.revocations`), the profile cache
(:mod:`.cache`), online users (:mod:`.online`), and the one list of their keys
(:mod:`.redis_keys`)."""
